mod node;
pub mod constraint;
pub mod duration;
pub mod error;
pub mod quantity;
