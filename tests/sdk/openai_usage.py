"""The usage and costs API (issue 28) through the official OpenAI Python SDK's admin client,
each answer validated against the SDK's own response models (generated from OpenAI's
OpenAPI document): the shape is checked against something we did not write.

    python3 openai_usage.py BASE_URL MANAGEMENT_KEY KEY_PUBLIC_ID REQUESTS
"""

import sys
import time

from openai import OpenAI
from openai.types.admin.organization.usage_completions_response import UsageCompletionsResponse
from openai.types.admin.organization.usage_costs_response import UsageCostsResponse

base, admin_key, key_id, requests = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = OpenAI(base_url=base, api_key="unused", admin_api_key=admin_key, max_retries=0)
usage = client.admin.organization.usage
now = int(time.time())
day = 86400


def raw(call, model, **kw):
    """The answer as JSON through the SDK's raw client, validated by its pydantic model."""
    r = call(**kw)
    body = r.http_response.json()
    return model.model_validate(body, strict=False), body


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


# Daily buckets, by key and model: every bucket present, today's holds the requests.
page, body = raw(usage.with_raw_response.completions, UsageCompletionsResponse,
                 start_time=now - 2 * day, group_by=["api_key_id", "model"])
check(body["object"] == "page" and not page.has_more, f"one page: {body}")
check(len(page.data) == 3, f"three daily buckets: {[b.start_time for b in page.data]}")
check(all(b.end_time - b.start_time == day for b in page.data), "daily widths")
today = page.data[-1]
check(len(today.results) == 1, f"one group today: {today.results}")
r = today.results[0]
check(r.object == "organization.usage.completions.result", r.object)
check(r.api_key_id == key_id and r.model == "lowrouter/echo", f"grouped: {r}")
check(r.num_model_requests == requests and r.input_tokens > 0 and r.output_tokens > 0, f"sums: {r}")
check(page.data[0].results == [], "an empty bucket is present with no results")

# Without grouping: the same totals, the group fields null.
page, _ = raw(usage.with_raw_response.completions, UsageCompletionsResponse, start_time=now - 3600,
              bucket_width="1d")
check(page.data[-1].results[0].api_key_id is None, "ungrouped")
check(page.data[-1].results[0].num_model_requests == requests, "ungrouped sum")

# Filtered by another key id: nothing.
page, _ = raw(usage.with_raw_response.completions, UsageCompletionsResponse, start_time=now - 3600,
              api_key_ids=["key_doesnotexist000000000000"])
check(all(b.results == [] for b in page.data), "another key's usage is empty")

# Hourly buckets, two per page: follow next_page to the end, seeing every request once.
seen, pages, cursor = 0, 0, None
while True:
    kw = dict(start_time=now - 5 * 3600, bucket_width="1h", limit=2)
    if cursor:
        kw["page"] = cursor
    page, _ = raw(usage.with_raw_response.completions, UsageCompletionsResponse, **kw)
    pages += 1
    check(len(page.data) <= 2, "limit buckets per page")
    seen += sum(x.num_model_requests for b in page.data for x in b.results)
    if not page.has_more:
        check(page.next_page is None, "no next page at the end")
        break
    cursor = page.next_page
check(pages == 3 and seen == requests, f"{pages} pages, {seen} requests")

# Costs, by line item (the model): the amount as a number, equal to the exact decimal.
page, body = raw(usage.with_raw_response.costs, UsageCostsResponse, start_time=now - 3600,
                 group_by=["line_item"])
result = body["data"][-1]["results"][0]
check(result["object"] == "organization.costs.result", result)
check(result["line_item"] == "lowrouter/echo", result)
amount = result["amount"]
check(isinstance(amount["value"], (int, float)) and amount["value"] > 0, amount)
check(f'{amount["value"]:.6f}' == amount["exact"], f"value is the exact amount: {amount}")

# A bad parameter is a 400 in OpenAI's error shape.
try:
    usage.completions(start_time=now, bucket_width="2d")
    check(False, "bucket_width 2d accepted")
except Exception as e:  # openai.BadRequestError
    check(getattr(e, "status_code", None) == 400, f"400: {e!r}")

print("all checks passed")
