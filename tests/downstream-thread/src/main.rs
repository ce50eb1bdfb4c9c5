//! A user's program: portable tasks defined in this crate, run by polyexec.

use polyexec::{Backend, Executor};
use serde::{Deserialize, Serialize};

/// A user-defined input type, defined outside polyexec.
#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u32,
    items: Vec<u32>,
}

fn total(order: Order) -> (u32, u32) {
    (order.id, order.items.iter().sum())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    polyexec::init();
    for &backend in Backend::all() {
        let exec = backend.build()?;
        let handles = exec.spawn_all(
            (0..10).map(|id| Order {
                id,
                items: (0..=id).collect(),
            }),
            total,
        );
        for (id, handle) in handles.into_iter().enumerate() {
            let (got_id, sum) = handle.join()?;
            assert_eq!(got_id as usize, id);
            assert_eq!(sum as usize, id * (id + 1) / 2);
        }
        let doubled: Vec<u32> = exec
            .map(1..=100u32, |x: u32| x * 2)
            .collect::<Result<_, _>>()?;
        assert_eq!(doubled.iter().sum::<u32>(), 10_100);
        println!("downstream: {backend} ok");
    }
    Ok(())
}
