//! Model cards and weights on disk.

mod card;

pub use card::{sha256_file, CardError, ModelCard, WindowInfo, CARD_FILE, WEIGHTS_FILE};
