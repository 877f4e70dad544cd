//! Can this machine run the CUDA backend? burn-cuda (through cudarc) panics at the first kernel when the driver
//! or NVRTC is missing, so the lab checks first and says in one line what is missing:
//! - the driver's device node (`/dev/nvidiactl`);
//! - the driver library `libcuda.so.1`, loaded the way cudarc loads it (the dynamic loader's search: LD_LIBRARY_PATH,
//!   the ld.so cache), and the CUDA version it supports (`cuDriverGetVersion`);
//! - NVRTC (`libnvrtc.so*`), which compiles burn-cuda's kernels at run time: it ships with the CUDA toolkit or
//!   the `nvidia-cuda-nvrtc-cu12` wheel, not with the driver.
//!
//! [`probe`] takes the paths to try, so the tests simulate each missing piece (an empty library list, a fake
//! driver library that reports an old version); [`cuda_available`](crate::cuda_available) probes the real ones.

use std::path::{Path, PathBuf};

/// The oldest driver CUDA version the backend runs on: CUDA 12.0 (burn-cuda's kernels target CUDA 12 features;
/// Hopper needs a 12.x driver anyway). The bindings themselves are built for the newest CUDA cudarc knows and
/// load each driver function lazily, so a 12.x driver serves them.
pub const MIN_DRIVER_CUDA: i32 = 12000;

/// What [`probe`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct CudaProbe {
    /// The device node checked and whether it exists.
    pub device_node: (PathBuf, bool),
    /// The driver library that loaded and the CUDA version it reports (e.g. 12080), or why none did.
    pub driver: Result<(String, i32), String>,
    /// The NVRTC library that loaded and its version (major, minor), or why none did.
    pub nvrtc: Result<(String, (i32, i32)), String>,
}

/// The driver library names cudarc tries (the first ones; it also tries versioned variants of `libcuda.so`).
pub const DRIVER_LIBS: &[&str] = &["libcuda.so.1", "libcuda.so"];
/// The NVRTC library names cudarc tries for CUDA 13, 12 and 11.
pub const NVRTC_LIBS: &[&str] = &[
    "libnvrtc.so",
    "libnvrtc.so.13",
    "libnvrtc.so.12",
    "libnvrtc.so.11",
];

fn load(candidates: &[String]) -> Result<(String, libloading::Library), String> {
    let mut why = String::new();
    for c in candidates {
        // SAFETY: loading a shared library runs its initialisers; these are NVIDIA's libraries (or the tests'
        // stand-ins), the same ones burn-cuda would load a moment later.
        match unsafe { libloading::Library::new(c) } {
            Ok(lib) => return Ok((c.clone(), lib)),
            Err(e) if why.is_empty() => why = e.to_string(),
            Err(_) => {}
        }
    }
    Err(why)
}

/// Looks for the device node, loads the first driver library and the first NVRTC library that load among the
/// candidates (names for the dynamic loader's search, or paths), and asks each for its version.
pub fn probe(device_node: &Path, driver_libs: &[String], nvrtc_libs: &[String]) -> CudaProbe {
    let driver = load(driver_libs).and_then(|(name, lib)| {
        // SAFETY: cuDriverGetVersion(int*) is the driver API's version query; it needs no cuInit.
        let version = unsafe {
            let f: libloading::Symbol<unsafe extern "C" fn(*mut i32) -> i32> = lib
                .get(b"cuDriverGetVersion\0")
                .map_err(|e| format!("{name} has no cuDriverGetVersion: {e}"))?;
            let mut v = 0i32;
            let status = f(&mut v);
            if status != 0 {
                return Err(format!(
                    "{name}: cuDriverGetVersion failed with CUDA error {status}"
                ));
            }
            v
        };
        Ok((name, version))
    });
    let nvrtc = load(nvrtc_libs).and_then(|(name, lib)| {
        // SAFETY: nvrtcVersion(int*, int*) reports NVRTC's version.
        let version = unsafe {
            let f: libloading::Symbol<unsafe extern "C" fn(*mut i32, *mut i32) -> i32> = lib
                .get(b"nvrtcVersion\0")
                .map_err(|e| format!("{name} has no nvrtcVersion: {e}"))?;
            let (mut major, mut minor) = (0i32, 0i32);
            if f(&mut major, &mut minor) != 0 {
                return Err(format!("{name}: nvrtcVersion failed"));
            }
            (major, minor)
        };
        Ok((name, version))
    });
    CudaProbe {
        device_node: (device_node.to_path_buf(), device_node.exists()),
        driver,
        nvrtc,
    }
}

fn cuda_version(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

impl CudaProbe {
    /// `Ok` with a one-line description when the CUDA backend can run, else the one-line reason it cannot.
    pub fn verdict(&self) -> Result<String, String> {
        let (node, exists) = &self.device_node;
        if !exists {
            return Err(format!(
                "no NVIDIA driver on this machine ({} is missing): run on CPU (`--backend cpu`)",
                node.display()
            ));
        }
        let (driver_lib, version) = match &self.driver {
            Ok(d) => d.clone(),
            Err(why) => {
                return Err(format!(
                    "the NVIDIA driver library libcuda.so.1 could not be loaded ({why}): install the driver or add its folder to LD_LIBRARY_PATH"
                ))
            }
        };
        if version < MIN_DRIVER_CUDA {
            return Err(format!(
                "the NVIDIA driver ({driver_lib}) supports CUDA {}, older than the CUDA {} physlab's CUDA backend needs: update the driver",
                cuda_version(version),
                cuda_version(MIN_DRIVER_CUDA)
            ));
        }
        let (nvrtc_lib, (major, minor)) = match &self.nvrtc {
            Ok(n) => n.clone(),
            Err(why) => {
                return Err(format!(
                    "NVRTC (libnvrtc.so), which compiles the CUDA kernels at run time, could not be loaded ({why}): install the CUDA toolkit's NVRTC or `pip install nvidia-cuda-nvrtc-cu12`, and add its lib folder to LD_LIBRARY_PATH"
                ))
            }
        };
        Ok(format!(
            "NVIDIA driver {driver_lib} (CUDA {}), NVRTC {nvrtc_lib} ({major}.{minor})",
            cuda_version(version)
        ))
    }
}

/// The real machine's probe: `/dev/nvidiactl`, and the libraries by the names cudarc loads.
pub fn probe_system() -> CudaProbe {
    let names = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    probe(
        Path::new("/dev/nvidiactl"),
        &names(DRIVER_LIBS),
        &names(NVRTC_LIBS),
    )
}
