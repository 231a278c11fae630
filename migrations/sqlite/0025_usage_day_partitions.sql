-- PostgreSQL's 0025 partitions `usage` by day; SQLite has no partitions, and its retention
-- removes rows in small steps instead (`Store::purge_usage_step`). Nothing changes here.
select 1;
