//! `cuttle-bindgen IN.wasm OUT_DIR`: the JavaScript glue of the browser demo, exactly as
//! `wasm-bindgen --target web --no-typescript --out-dir OUT_DIR IN.wasm` writes it (the
//! same library call with the same settings), so web/build.sh needs no global install.

use std::process::ExitCode;

use wasm_bindgen_cli_support::Bindgen;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, out_dir] = args.as_slice() else {
        eprintln!("usage: cuttle-bindgen IN.wasm OUT_DIR (got {} arguments, need 2)", args.len());
        return ExitCode::from(2);
    };
    match bindgen(input, out_dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cuttle-bindgen: {input}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The settings of the `wasm-bindgen` command for `--target web --no-typescript`: its
/// other flags' defaults are the library's, except the default module path, which the
/// command keeps (`init()` then finds `cuttle_bg.wasm` beside the script by itself).
fn bindgen(input: &str, out_dir: &str) -> anyhow::Result<()> {
    Bindgen::new().web(true)?.input_path(input).typescript(false).omit_default_module_path(false).generate(out_dir)
}
