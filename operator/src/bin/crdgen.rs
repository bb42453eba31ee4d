//! Writes the CRDs generated from `prow-api` into a directory (the chart's `crds/` by default).

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("charts/prow-operator/crds"));
    std::fs::create_dir_all(&dir)?;
    for crd in prow_api::crd::all() {
        let path = dir.join(prow_api::crd::file_name(&crd));
        std::fs::write(&path, prow_api::crd::to_yaml(&crd)?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
