//! The library without the CLI: train the small CNN on the Fashion-MNIST subset that ships
//! inside cuttle, with Cuttlefish, and print one line per epoch.
//!
//!     cargo run --release --example train_fashion

use cuttle::cuttlefish::{Cuttlefish, CuttlefishConfig};
use cuttle::data::{load, DataSpec};
use cuttle::gpu::{Gpu, GpuOptions};
use cuttle::train::{Schedule, TrainConfig, Trainer};

fn main() -> Result<(), cuttle::Error> {
    let gpu = pollster::block_on(Gpu::new(&GpuOptions::from_env()))?;
    println!("adapter: {}", gpu.adapter);
    let data = load(&DataSpec::Builtin)?;
    let cfg = TrainConfig {
        model: "cnn".into(),
        epochs: 5,
        batch: 64,
        lr: 0.05,
        schedule: Schedule::OneCycle,
        ..Default::default()
    };
    let mut trainer = Trainer::new(&gpu, &data, cfg)?;
    let mut cf =
        pollster::block_on(Cuttlefish::new(&gpu, &trainer, CuttlefishConfig::for_schedule(5, Schedule::OneCycle)))?;
    for epoch in 0..trainer.cfg.epochs {
        if cf.ready() {
            let r = pollster::block_on(cf.switch(&gpu, &mut trainer, epoch))?;
            println!("switch: {} -> {} parameters", r.params_before, r.params_after);
        }
        let r = pollster::block_on(trainer.run_epoch(&gpu, epoch, &mut |_, _, _| {}))?;
        let sranks = pollster::block_on(cf.observe(&gpu, epoch + 1))?;
        println!("epoch {}: test accuracy {:.2}%, stable ranks {sranks:.1?}", r.epoch, 100.0 * r.test_acc);
    }
    Ok(())
}
