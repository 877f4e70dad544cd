//! The CUDA backend's pre-flight check (`physlab_trainer::cuda_probe`), each missing piece simulated: no device
//! node, no driver library, a driver older than CUDA 12.0, no NVRTC, and everything present. The stand-in driver
//! and NVRTC libraries are compiled here with the system C compiler (`cc`, which the Rust toolchain needs anyway):
//! one function each, returning the version the test asks for.

use std::path::{Path, PathBuf};
use std::process::Command;

use physlab_trainer::cuda_probe::{probe, CudaProbe};

/// Compiles `source` into `dir/name` as a shared library.
fn shared_lib(dir: &Path, name: &str, source: &str) -> String {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, source).unwrap();
    let so = dir.join(name);
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&c)
        .status()
        .expect("a C compiler (cc) to build the stand-in libraries");
    assert!(status.success());
    so.display().to_string()
}

fn fake_driver(dir: &Path, version: i32) -> String {
    shared_lib(
        dir,
        &format!("libcuda-{version}.so"),
        &format!("int cuDriverGetVersion(int *v) {{ *v = {version}; return 0; }}\n"),
    )
}

fn fake_nvrtc(dir: &Path) -> String {
    shared_lib(
        dir,
        "libnvrtc-fake.so",
        "int nvrtcVersion(int *major, int *minor) { *major = 12; *minor = 8; return 0; }\n",
    )
}

struct Machine {
    _dir: tempfile::TempDir,
    node: PathBuf,
    driver_12: String,
    driver_11: String,
    nvrtc: String,
    missing: String,
}

fn machine() -> Machine {
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("nvidiactl");
    std::fs::write(&node, b"").unwrap();
    Machine {
        driver_12: fake_driver(dir.path(), 12080),
        driver_11: fake_driver(dir.path(), 11080),
        nvrtc: fake_nvrtc(dir.path()),
        missing: dir.path().join("libcuda.so.1").display().to_string(),
        node,
        _dir: dir,
    }
}

fn verdict(
    node: &Path,
    driver: &[&String],
    nvrtc: &[&String],
) -> (CudaProbe, Result<String, String>) {
    let owned = |v: &[&String]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let p = probe(node, &owned(driver), &owned(nvrtc));
    let v = p.verdict();
    (p, v)
}

#[test]
fn no_device_node_means_no_driver() {
    let m = machine();
    let (_, v) = verdict(
        Path::new("/nonexistent/nvidiactl"),
        &[&m.driver_12],
        &[&m.nvrtc],
    );
    let e = v.unwrap_err();
    assert!(
        e.starts_with("no NVIDIA driver on this machine (/nonexistent/nvidiactl is missing)"),
        "{e}"
    );
    assert!(!e.contains('\n'));
}

#[test]
fn an_empty_library_path_names_the_driver_library() {
    let m = machine();
    let (p, v) = verdict(&m.node, &[&m.missing], &[&m.nvrtc]);
    assert!(p.device_node.1);
    let e = v.unwrap_err();
    assert!(e.contains("libcuda.so.1 could not be loaded"), "{e}");
    assert!(e.contains("LD_LIBRARY_PATH"), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn an_old_driver_is_refused_with_both_versions() {
    let m = machine();
    let (p, v) = verdict(&m.node, &[&m.driver_11], &[&m.nvrtc]);
    assert_eq!(p.driver.as_ref().unwrap().1, 11080);
    let e = v.unwrap_err();
    assert!(
        e.contains("supports CUDA 11.8, older than the CUDA 12.0"),
        "{e}"
    );
    assert!(!e.contains('\n'));
}

#[test]
fn a_driver_without_nvrtc_names_nvrtc() {
    let m = machine();
    let (_, v) = verdict(&m.node, &[&m.driver_12], &[&m.missing]);
    let e = v.unwrap_err();
    assert!(
        e.starts_with(
            "NVRTC (libnvrtc.so), which compiles the CUDA kernels at run time, could not be loaded"
        ),
        "{e}"
    );
    assert!(!e.contains('\n'));
}

#[test]
fn the_first_library_that_loads_is_used_and_described() {
    let m = machine();
    // A missing candidate first, as the loader's list has names that are absent on most machines.
    let (p, v) = verdict(
        &m.node,
        &[&m.missing, &m.driver_12],
        &[&m.missing, &m.nvrtc],
    );
    assert_eq!(p.driver.as_ref().unwrap(), &(m.driver_12.clone(), 12080));
    assert_eq!(p.nvrtc.as_ref().unwrap().1, (12, 8));
    let ok = v.unwrap();
    assert!(ok.contains("(CUDA 12.8)") && ok.contains("(12.8)"), "{ok}");
}
