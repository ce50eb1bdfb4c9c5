//! Portable tasks defined in a downstream crate, shared by its binary and its tests.

use serde::{Deserialize, Serialize};

/// An input type of this crate's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub item: String,
    pub quantity: u32,
    pub unit_cents: u64,
}

/// A task defined in this crate: the total of an order, and the process that computed it.
pub fn total(order: Order) -> (u64, u32) {
    (
        u64::from(order.quantity) * order.unit_cents,
        std::process::id(),
    )
}
