//! Model cards and weights on disk.

mod card;
mod folder;

pub use card::{sha256_file, CardError, ModelCard, WindowInfo, CARD_FILE, WEIGHTS_FILE};
pub use folder::{write_model_folder, CardInfo};
