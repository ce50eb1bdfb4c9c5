//! Runs the second-day API on every backend compiled in.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    polyexec::init();
    for backend in polyexec::Backend::all() {
        let exec = backend.build()?;
        downstream_api::exercise(&exec);
        println!("{backend}: ok");
    }
    Ok(())
}
