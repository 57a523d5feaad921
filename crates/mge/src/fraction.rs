//! Exact non-negative fractions for work-unit counts (001 Appendix B gives them as fractions
//! of `N_0 I`, e.g. `37/16 N_0 I`; the accountant adds `N H W / (H_0 W_0)` exactly).

use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A reduced fraction `num / den` with `den > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fraction {
    num: u128,
    den: u128,
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Fraction {
    /// Zero.
    pub const ZERO: Fraction = Fraction { num: 0, den: 1 };

    /// `num / den`, reduced; `den == 0` is an error.
    pub fn new(num: u128, den: u128) -> Result<Self> {
        if den == 0 {
            return Err(Error::Fraction("zero denominator".into()));
        }
        let g = gcd(num, den).max(1);
        Ok(Fraction {
            num: num / g,
            den: den / g,
        })
    }

    /// The integer `n`.
    pub fn from_int(n: u128) -> Self {
        Fraction { num: n, den: 1 }
    }

    /// Numerator of the reduced fraction.
    pub fn numer(&self) -> u128 {
        self.num
    }

    /// Denominator of the reduced fraction.
    pub fn denom(&self) -> u128 {
        self.den
    }

    /// Exact sum (overflow is an error).
    pub fn checked_add(self, o: Fraction) -> Result<Fraction> {
        let g = gcd(self.den, o.den);
        let l = (self.den / g)
            .checked_mul(o.den)
            .ok_or_else(|| Error::Fraction("denominator overflow".into()))?;
        let a = self.num.checked_mul(l / self.den);
        let b = o.num.checked_mul(l / o.den);
        match (a, b) {
            (Some(a), Some(b)) => Fraction::new(
                a.checked_add(b)
                    .ok_or_else(|| Error::Fraction("overflow".into()))?,
                l,
            ),
            _ => Err(Error::Fraction("numerator overflow".into())),
        }
    }

    /// Exact difference `self - o`; negative results are an error.
    pub fn checked_sub(self, o: Fraction) -> Result<Fraction> {
        let err = || Error::Fraction("overflow or negative difference".into());
        let a = self.num.checked_mul(o.den).ok_or_else(err)?;
        let b = o.num.checked_mul(self.den).ok_or_else(err)?;
        let den = self.den.checked_mul(o.den).ok_or_else(err)?;
        Fraction::new(a.checked_sub(b).ok_or_else(err)?, den)
    }

    /// Exact product (overflow is an error).
    pub fn checked_mul(self, o: Fraction) -> Result<Fraction> {
        let g1 = gcd(self.num, o.den).max(1);
        let g2 = gcd(o.num, self.den).max(1);
        let num = (self.num / g1).checked_mul(o.num / g2);
        let den = (self.den / g2).checked_mul(o.den / g1);
        match (num, den) {
            (Some(n), Some(d)) => Fraction::new(n, d),
            _ => Err(Error::Fraction("overflow".into())),
        }
    }

    /// Nearest `f64`.
    pub fn to_f64(&self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// True when the fraction is an integer.
    pub fn is_integer(&self) -> bool {
        self.den == 1
    }
}

impl Default for Fraction {
    fn default() -> Self {
        Fraction::ZERO
    }
}

/// `"74000"` for integers, `"115/8"` otherwise.
impl fmt::Display for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

/// Parses what `Display` writes (`"n"` or `"n/d"`), e.g. from a checkpoint's metadata.
impl FromStr for Fraction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let parse = |x: &str| {
            x.trim()
                .parse::<u128>()
                .map_err(|e| Error::Fraction(format!("cannot parse {s:?}: {e}")))
        };
        match s.split_once('/') {
            Some((n, d)) => Fraction::new(parse(n)?, parse(d)?),
            None => Ok(Fraction::from_int(parse(s)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn add_mul_match_f64(a in 0u128..10_000, b in 1u128..5_000, c in 0u128..10_000, d in 1u128..5_000) {
            let x = Fraction::new(a, b).unwrap();
            let y = Fraction::new(c, d).unwrap();
            let s = x.checked_add(y).unwrap();
            let p = x.checked_mul(y).unwrap();
            let (af, bf, cf, df) = (a as f64, b as f64, c as f64, d as f64);
            prop_assert!((s.to_f64() - (af / bf + cf / df)).abs() < 1e-9 * (1.0 + s.to_f64()));
            prop_assert!((p.to_f64() - (af / bf) * (cf / df)).abs() < 1e-9 * (1.0 + p.to_f64()));
            prop_assert_eq!(gcd(s.numer(), s.denom()).max(1), 1);
            prop_assert_eq!(s.to_string().parse::<Fraction>().unwrap(), s);
            prop_assert_eq!(s.checked_sub(y).unwrap(), x);
            prop_assert_eq!(x.checked_sub(s).is_err(), c != 0);
        }
    }

    #[test]
    fn display_and_errors() {
        assert_eq!(Fraction::new(148, 64).unwrap().to_string(), "37/16");
        assert_eq!(Fraction::new(74000, 1).unwrap().to_string(), "74000");
        assert!(Fraction::new(1, 0).is_err());
        assert!("x/2".parse::<Fraction>().is_err());
    }
}
