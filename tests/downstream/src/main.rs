//! Runs portable tasks on the subprocess backend from a downstream binary.

use std::time::Duration;

use polyexec::{Backend, Executor};
use polyexec_downstream::{Order, total};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    polyexec::init();
    let exec = Backend::from_name("subprocess")?.build_with_workers(Some(2))?;

    let order = Order {
        item: "tea".into(),
        quantity: 3,
        unit_cents: 450,
    };
    let (cents, pid) = exec.spawn(order, total).join()?;
    assert_eq!(cents, 1350);
    assert_ne!(pid, std::process::id(), "the task ran in this process");

    let greeting = exec
        .spawn_async("downstream".to_string(), |name: String| async move {
            polyexec::sleep(Duration::from_millis(10)).await;
            format!("hello from {name}")
        })
        .join()?;
    assert_eq!(greeting, "hello from downstream");

    let sum: u64 = exec
        .map(1..=10_000u64, |x: u64| x * 2)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .sum();
    assert_eq!(sum, 100_010_000);
    println!("downstream: {} ran tasks in worker processes", exec.backend_name());
    Ok(())
}
