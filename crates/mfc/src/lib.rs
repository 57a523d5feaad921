//! mfc
