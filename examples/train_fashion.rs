//! The library without the CLI: train the small CNN on the Fashion-MNIST subset that ships
//! inside cuttle, with Cuttlefish, and print one line per epoch.
//!
//!     cargo run --release --example train_fashion

use cuttle::cuttlefish::CuttlefishConfig;
use cuttle::data::{load, DataSpec};
use cuttle::gpu::{Gpu, GpuOptions};
use cuttle::session::Session;
use cuttle::train::{Schedule, TrainConfig};

fn main() -> Result<(), cuttle::Error> {
    let gpu = pollster::block_on(Gpu::new(&GpuOptions::from_env()))?;
    println!("adapter: {}", gpu.adapter());
    let data = load(&DataSpec::Builtin)?;
    let cfg = TrainConfig {
        model: "cnn".into(),
        epochs: 5,
        batch: 64,
        lr: 0.05,
        schedule: Schedule::OneCycle,
        ..Default::default()
    };
    let cf = CuttlefishConfig::for_schedule(cfg.schedule);
    let mut session = pollster::block_on(Session::new(&gpu, &data, cfg, Some(cf)))?;
    while !session.done() {
        let never = || false;
        let Some(o) = pollster::block_on(session.next_epoch(&gpu, &mut |_, _, _| {}, &never))? else { break };
        if let Some(sw) = &o.switch {
            println!("switch: {} -> {} parameters", sw.params_before, sw.params_after);
        }
        let r = &o.report;
        println!("epoch {}: test accuracy {:.2}%, stable ranks {:.1?}", r.epoch, 100.0 * r.test_acc, o.stable_ranks);
    }
    Ok(())
}
