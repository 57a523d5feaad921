//! The subcommands other than `reproduce` and `bench`: one file each.

pub mod data_cmd;
pub mod eval;
pub mod landscape;
pub mod mfc_cmd;
pub mod models_cmd;
pub mod stencil;
pub mod train_cmd;
pub mod workunits_cmd;
