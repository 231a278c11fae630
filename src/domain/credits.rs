//! Money. 1 credit = €0.01 = 1,000,000 micro-credits. Never a float anywhere.

use std::fmt;
use std::str::FromStr;

/// Micro-credits per credit.
pub const MICROS_PER_CREDIT: i64 = 1_000_000;

/// An amount of credits, held as integer micro-credits.
/// Decoded straight from a `bigint` micro-credit column (`transparent`), so rows carry money
/// typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, sqlx::Type)]
#[sqlx(transparent)]
pub struct Credits(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditsError {
    #[error("enter an amount such as 10 or 2.50")]
    NotANumber,
    /// A number with a minus sign: a different mistake from typing letters.
    #[error("the amount cannot be negative")]
    Negative,
    #[error("use at most 6 decimal places")]
    TooPrecise,
    #[error("the amount is too large")]
    TooLarge,
}

impl Credits {
    pub const ZERO: Credits = Credits(0);

    pub const fn from_micros(micros: i64) -> Self {
        Credits(micros)
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Parses a decimal amount of credits ("25", "25.00", "0.000001"). Signs are rejected:
    /// every amount a user types is a positive quantity; callers decide whether 0 is allowed.
    pub fn parse(input: &str) -> Result<Self, CreditsError> {
        let s = input.trim();
        // "-5" is a negative amount (its own message); "--5" or "-abc" is not a number. One
        // sign only, checked without recursing: a form field of 200,000 dashes once
        // recursed once per dash and overflowed the stack, which aborts the process.
        if let Some(rest) = s.strip_prefix('-') {
            return Err(match Credits::parse_unsigned(rest) {
                Ok(_) if !rest.starts_with('-') => CreditsError::Negative,
                _ => CreditsError::NotANumber,
            });
        }
        Credits::parse_unsigned(s)
    }

    /// [`Credits::parse`] of a trimmed text without a sign.
    fn parse_unsigned(s: &str) -> Result<Self, CreditsError> {
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
            return Err(CreditsError::NotANumber);
        }
        if frac.len() > 6 {
            return Err(CreditsError::TooPrecise);
        }
        // Ten million credits (€100k) is far beyond any single grant or limit; capping here
        // keeps every later multiplication comfortably inside i64.
        if whole.trim_start_matches('0').len() > 9 {
            return Err(CreditsError::TooLarge);
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| CreditsError::NotANumber)?
        };
        let mut frac_micros: i64 = 0;
        for (i, b) in frac.bytes().enumerate() {
            frac_micros += i64::from(b - b'0') * 10i64.pow(5 - i as u32);
        }
        Ok(Credits(whole * MICROS_PER_CREDIT + frac_micros))
    }

    /// Cost of `tokens` at `price_per_million`, rounded up to the next micro-credit so that
    /// no request is ever free by rounding.
    pub fn cost_of(tokens: u64, price_per_million: Credits) -> Credits {
        let raw = i128::from(tokens) * i128::from(price_per_million.0);
        let micros = (raw + 999_999) / 1_000_000;
        Credits(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    pub fn saturating_add(self, other: Credits) -> Credits {
        Credits(self.0.saturating_add(other.0))
    }

    pub fn saturating_sub(self, other: Credits) -> Credits {
        Credits(self.0.saturating_sub(other.0))
    }

    /// All six decimals: exact, for machine-readable exports.
    pub fn exact(self) -> String {
        format!("{:.6}", Decimal(self.0))
    }

    /// A price per million units (tokens) as the exact decimal price of one unit, without
    /// trailing zeros (`"0.00025"`): OpenRouter's per-token pricing strings.
    pub fn per_million_as_per_unit(self) -> String {
        // micros / 10^6 credits per million units = micros / 10^12 credits per unit.
        let digits = format!("{:013}", self.0.unsigned_abs());
        let (whole, frac) = digits.split_at(digits.len() - 12);
        let frac = frac.trim_end_matches('0');
        let sign = if self.0 < 0 { "-" } else { "" };
        if frac.is_empty() {
            format!("{sign}{whole}")
        } else {
            format!("{sign}{whole}.{frac}")
        }
    }

    /// The amount as a JSON number, for APIs whose clients expect one (OpenRouter's
    /// `usage.cost`). Exact, although it goes through an `f64`: serde_json writes the shortest
    /// decimal that reads back as the same `f64`, and a decimal of at most 15 significant
    /// digits (any amount under 10^9 credits, to the micro-credit) is that shortest form of
    /// its nearest `f64`. Nothing computes with it.
    pub fn json_number(self) -> serde_json::Number {
        serde_json::Number::from_f64(self.0 as f64 / 1_000_000.0).unwrap_or_else(|| 0.into())
    }

    /// Decimals an amount needs to be shown exactly: two, or up to six for fractions of a
    /// cent (the trailing zeros beyond two dropped).
    pub fn places_needed(self) -> usize {
        let frac = self.0.unsigned_abs() % 1_000_000;
        let mut places = 6;
        let mut f = frac;
        while places > 2 && f.is_multiple_of(10) {
            f /= 10;
            places -= 1;
        }
        if frac == 0 {
            2
        } else {
            places
        }
    }

    /// The dashboard's one rule for amounts: two decimals, more (up to six) only when the
    /// amount needs them, thousands separated by commas: `1,000,000.00`, `0.008`.
    pub fn display(self) -> String {
        self.display_places(self.places_needed())
    }

    /// As [`Credits::display`], with `places` decimals (2 to 6): a column of amounts uses
    /// the most any of them needs, so that their decimal points line up.
    pub fn display_places(self, places: usize) -> String {
        let s = format!("{:.*}", places.clamp(2, 6), Decimal(self.0));
        let (sign, rest) = s.strip_prefix('-').map_or(("", s.as_str()), |r| ("-", r));
        let (whole, frac) = rest.split_once('.').unwrap_or((rest, ""));
        let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
        for (i, c) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        format!("{sign}{grouped}.{frac}")
    }

    /// A column of amounts, formatted with the decimals the most precise of them needs.
    pub fn display_column(amounts: &[Credits]) -> Vec<String> {
        let places = amounts.iter().map(|c| c.places_needed()).max().unwrap_or(2);
        amounts.iter().map(|c| c.display_places(places)).collect()
    }

    /// Two decimals for amounts in whole cents, up to six where a cheap request needs them.
    pub fn display_precise(self) -> String {
        let s = format!("{:.6}", Decimal(self.0));
        let trimmed = s.trim_end_matches('0');
        let dot = trimmed.find('.').unwrap_or(trimmed.len());
        let decimals = trimmed.len() - dot - 1;
        if decimals < 2 {
            format!("{:.2}", Decimal(self.0))
        } else {
            trimmed.to_string()
        }
    }
}

/// Fixed-point helper so formatting never goes through a float.
struct Decimal(i64);

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let places = f.precision().unwrap_or(2).min(6);
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / 1_000_000;
        let frac = abs % 1_000_000;
        if places == 0 {
            return write!(f, "{sign}{whole}");
        }
        // Truncate (not round) to the requested places: shown balances never overstate.
        let frac = frac / 10u64.pow(6 - places as u32);
        write!(f, "{sign}{whole}.{frac:0width$}", width = places)
    }
}

/// Two decimals: the dashboard's default presentation of balances and limits.
impl fmt::Display for Credits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", Decimal(self.0))
    }
}

impl FromStr for Credits {
    type Err = CreditsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Credits::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for Credits {
    /// Accepts a decimal string ("2.50") or an integer (whole credits); never a float.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u32),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Credits(i64::from(n) * MICROS_PER_CREDIT)),
            Raw::Str(s) => Credits::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl serde::Serialize for Credits {
    /// JSON carries a decimal string with six places: exact, and no client float surprises.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:.6}", Decimal(self.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_per_million_become_exact_prices_per_token() {
        let per_token = |s: &str| Credits::parse(s).unwrap().per_million_as_per_unit();
        assert_eq!(per_token("250"), "0.00025");
        assert_eq!(per_token("2"), "0.000002");
        assert_eq!(per_token("0.15"), "0.00000015");
        assert_eq!(per_token("0.000001"), "0.000000000001");
        assert_eq!(per_token("0"), "0");
        assert_eq!(per_token("2000000"), "2");
    }

    #[test]
    fn one_rule_for_amounts_on_the_dashboard() {
        let c = |m: i64| Credits::from_micros(m);
        assert_eq!(c(0).display(), "0.00");
        assert_eq!(c(8_000).display(), "0.008");
        assert_eq!(c(10_000).display(), "0.01");
        assert_eq!(c(123_456).display(), "0.123456");
        assert_eq!(c(1_000_000_000_000).display(), "1,000,000.00");
        assert_eq!(c(-1_234_500_000).display(), "-1,234.50");
        assert_eq!(
            Credits::display_column(&[c(3_770_000), c(8_000), c(1_222_000_000)]),
            ["3.770", "0.008", "1,222.000"]
        );
    }

    #[test]
    fn parses_decimal_amounts() {
        assert_eq!(Credits::parse("25.00").unwrap().micros(), 25_000_000);
        assert_eq!(Credits::parse("0.000001").unwrap().micros(), 1);
        assert_eq!(Credits::parse("7").unwrap().micros(), 7_000_000);
        assert_eq!(Credits::parse(".5").unwrap().micros(), 500_000);
        assert_eq!(Credits::parse(" 3.1 ").unwrap().micros(), 3_100_000);
    }

    #[test]
    fn rejects_bad_amounts() {
        for bad in [
            "", ".", "-", "-abc", "--1", "1e3", "1,5", "abc", "1.2.3", "+1", "NaN",
        ] {
            assert_eq!(Credits::parse(bad), Err(CreditsError::NotANumber), "{bad}");
        }
        // A minus before a number is its own mistake, said as such.
        for negative in ["-1", "-0.5", " -5 "] {
            assert_eq!(
                Credits::parse(negative),
                Err(CreditsError::Negative),
                "{negative}"
            );
        }
        assert_eq!(Credits::parse("1.0000001"), Err(CreditsError::TooPrecise));
        assert_eq!(Credits::parse("99999999999"), Err(CreditsError::TooLarge));
        // A form's worth of signs is one refusal, not one stack frame per sign.
        let dashes = format!("{}5", "-".repeat(1_000_000));
        assert_eq!(Credits::parse(&dashes), Err(CreditsError::NotANumber));
    }

    #[test]
    fn formats_without_floats() {
        assert_eq!(Credits::from_micros(5_000_000).to_string(), "5.00");
        assert_eq!(Credits::from_micros(1_239_999).to_string(), "1.23");
        assert_eq!(Credits::from_micros(120).display_precise(), "0.00012");
        assert_eq!(Credits::from_micros(1_500_000).display_precise(), "1.50");
        assert_eq!(Credits::from_micros(-2_500_000).to_string(), "-2.50");
    }

    #[test]
    fn cost_rounds_up() {
        let price = Credits::parse("1000").unwrap(); // per million tokens
        assert_eq!(Credits::cost_of(1, price).micros(), 1_000);
        assert_eq!(Credits::cost_of(0, price).micros(), 0);
        let cheap = Credits::from_micros(3);
        assert_eq!(Credits::cost_of(1, cheap).micros(), 1);
    }
}
