//! mge
