//! fmg
