//! Rendering: line plots and labelled picture grids (measurement lives elsewhere).

pub mod pictures;
pub mod plot;
