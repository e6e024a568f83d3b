//! `criu swrk N`: serve CRIU's RPC on the SOCK_SEQPACKET socket at fd N. Each request is
//! answered with one response (after the notifications of a dump or restore); the
//! service ends after one request unless the client set `keep_open`, as CRIU's does.
//! A refusal's reason goes into `cr_errmsg` and, for a dump or restore, as the last
//! line of its log.

use crate::channel::Channel;
use crate::job::{run_dump, run_restore, Job};
use crate::notify::Notifier;
use crate::opts;
use crate::page_server::PageServer;
use crate::proto::{
    CriuDumpResp, CriuFeatures, CriuPageServerInfo, CriuReq, CriuReqType, CriuResp,
    CriuRestoreResp, CriuVersion,
};

/// The CRIU version stasis answers with: the release whose RPC it speaks (runc wants at
/// least 3.0, podman 3.11).
pub const CRIU_MAJOR: i32 = 4;
pub const CRIU_MINOR: i32 = 2;

/// Serves requests on fd `fd` until one without `keep_open` or the client's close;
/// returns the exit code.
pub fn serve(fd: i32) -> i32 {
    let channel = Channel::new(fd);
    let peer = nix::unistd::getppid().as_raw();
    loop {
        let req = match channel.recv() {
            Ok(Some(req)) => req,
            Ok(None) => return 0,
            Err(why) => {
                eprintln!("stasis-criu: {why}");
                return 1;
            }
        };
        let keep_open = req.keep_open();
        let resp = handle(&channel, &req, peer);
        let ok = resp.success;
        if let Err(why) = channel.send(&resp, None) {
            eprintln!("stasis-criu: {why}");
            return 1;
        }
        if !keep_open {
            return if ok { 0 } else { 1 };
        }
    }
}

fn handle(channel: &Channel, req: &CriuReq, peer: i32) -> CriuResp {
    let kind = req.r#type();
    let answer = match kind {
        CriuReqType::Version => Ok(version()),
        CriuReqType::Check => check(),
        CriuReqType::FeatureCheck => Ok(features(req)),
        CriuReqType::Dump => dump(channel, req, peer),
        CriuReqType::PreDump | CriuReqType::SinglePreDump => pre_dump(req, peer),
        CriuReqType::Restore => restore(channel, req, peer),
        CriuReqType::WaitPid => wait_pid(req),
        CriuReqType::PageServer | CriuReqType::PageServerChld => page_server(req, peer),
        other => Err(refusal(other)),
    };
    match answer {
        Ok(mut resp) => {
            resp.r#type = kind as i32;
            resp.success = true;
            resp
        }
        Err(why) => failure(kind, why),
    }
}

/// Why stasis refuses a request type it does not serve.
fn refusal(kind: CriuReqType) -> String {
    let why = match kind {
        CriuReqType::CpuinfoDump | CriuReqType::CpuinfoCheck => {
            "stasis writes no cpuinfo image: every image's inventory records the CPU \
             features it needs, checked at restore"
        }
        CriuReqType::Notify => "a NOTIFY answer outside a dump or restore",
        CriuReqType::Empty => "an EMPTY request",
        _ => "unexpected request",
    };
    format!("{} request refused: {why}", kind.as_str_name())
}

fn failure(kind: CriuReqType, why: String) -> CriuResp {
    CriuResp {
        r#type: kind as i32,
        success: false,
        cr_errmsg: Some(why),
        ..Default::default()
    }
}

fn version() -> CriuResp {
    CriuResp {
        version: Some(CriuVersion {
            major_number: CRIU_MAJOR,
            minor_number: CRIU_MINOR,
            gitid: None,
            sublevel: Some(0),
            extra: None,
            name: Some(format!("stasis {}", crate::job::stasis_version())),
        }),
        ..Default::default()
    }
}

/// Every required kernel feature probed, the missing ones named.
fn check() -> Result<CriuResp, String> {
    let probes = stasis::check::run_all();
    let missing: Vec<String> = (probes.iter())
        .filter(|p| p.required && !p.ok)
        .map(|p| format!("{}: {} ({})", p.name, p.consequence, p.detail))
        .collect();
    match missing.is_empty() {
        true => Ok(CriuResp::default()),
        false => Err(format!("missing: {}", missing.join("; "))),
    }
}

/// Answered truthfully for each feature asked: memory tracking (pre-dump) where this
/// kernel has async write-protect userfaultfd, lazy pages where it has missing-mode
/// userfaultfd with the events post-copy follows (`stasis check`'s probe); no pidfd
/// store.
fn features(req: &CriuReq) -> CriuResp {
    let asked = req.features.unwrap_or_default();
    CriuResp {
        features: Some(CriuFeatures {
            mem_track: asked
                .mem_track
                .map(|_| stasis::check::tracking_method().is_some()),
            lazy_pages: (asked.lazy_pages).map(|_| stasis::lazy::restore::check_kernel().is_ok()),
            pidfd_store: asked.pidfd_store.map(|_| false),
        }),
        ..Default::default()
    }
}

/// The job of a dump or restore request, its log opened; a refusal is logged.
fn prepare(req: &CriuReq, peer: i32, restore: bool) -> Result<(Job, crate::log::Log), String> {
    let o = req.opts.clone().ok_or("a request without opts")?;
    let mut job = opts::base(&o, peer)?;
    let mut log = job.open_log()?;
    if let Err(why) = opts::fill(&mut job, &o, restore) {
        log.error(&why);
        return Err(why);
    }
    for note in opts::accepted(&o) {
        log.info(&note);
    }
    Ok((job, log))
}

fn dump(channel: &Channel, req: &CriuReq, peer: i32) -> Result<CriuResp, String> {
    let (job, mut log) = prepare(req, peer, false)?;
    let enabled = req.opts.as_ref().is_some_and(|o| o.notify_scripts());
    let mut notifier = Notifier::new(channel, enabled, log.clone());
    run_dump(&job, &mut log, &mut notifier)?;
    Ok(CriuResp {
        dump: Some(CriuDumpResp {
            restored: Some(false),
        }),
        ..Default::default()
    })
}

/// `PRE_DUMP` and `SINGLE_PRE_DUMP` (the same here: the tree is frozen only briefly
/// either way, and its pages are read while it runs).
fn pre_dump(req: &CriuReq, peer: i32) -> Result<CriuResp, String> {
    let (job, mut log) = prepare(req, peer, false)?;
    if job.lazy.is_some() {
        let why = "lazy_pages: a pre-dump serves no pages (lazy_pages goes with DUMP)";
        log.error(why);
        return Err(why.into());
    }
    crate::job::run_pre_dump(&job, &mut log)?;
    Ok(CriuResp {
        dump: Some(CriuDumpResp {
            restored: Some(false),
        }),
        ..Default::default()
    })
}

fn restore(channel: &Channel, req: &CriuReq, peer: i32) -> Result<CriuResp, String> {
    let (mut job, mut log) = prepare(req, peer, true)?;
    let opts = req.opts.as_ref();
    let lazy = match opts.is_some_and(|o| o.lazy_pages()) {
        true => Some(crate::lazy::connect(&job.work).inspect_err(|why| log.error(why))?),
        false => None,
    };
    let link = lazy.map(|(link, source)| {
        job.lazy = Some(source);
        link
    });
    let enabled = opts.is_some_and(|o| o.notify_scripts());
    let mut notifier = Notifier::new(channel, enabled, log.clone());
    let restored = run_restore(&job, &mut log, &mut notifier)?;
    if let Some(link) = link {
        crate::lazy::complete(link, &restored).inspect_err(|why| log.error(why))?;
    }
    if let Some(why) = &notifier.late_failure {
        log.error(&format!(
            "post-resume notification failed (the tree runs): {why}"
        ));
    }
    Ok(CriuResp {
        restore: Some(CriuRestoreResp { pid: restored.pid }),
        ..Default::default()
    })
}

/// `PAGE_SERVER` and `PAGE_SERVER_CHLD`: starts stasis's page server on the request's
/// images directory, listening on `ps.address` (any) and `ps.port` (0: one the kernel
/// picks), and answers with its pid and port once it listens, as CRIU does. Both start
/// it as a child of this service (CRIU's `PAGE_SERVER` starts a daemon); it ends after
/// the last image of a chain (a dump's), or at the first failure.
fn page_server(req: &CriuReq, peer: i32) -> Result<CriuResp, String> {
    let o = req.opts.clone().ok_or("a request without opts")?;
    let job = opts::base(&o, peer)?;
    opts::refuse_unsupported(&o, false)?;
    let ps = o.ps.clone().unwrap_or_default();
    let log = (job.log_file.as_ref())
        .filter(|n| n.as_os_str() != "-")
        .map(|n| job.work.join(n));
    let mut server = PageServer {
        log,
        dir: job.images,
        address: ps.address.unwrap_or("0.0.0.0".into()),
        port: u16::try_from(ps.port.unwrap_or(0))
            .map_err(|_| format!("ps.port {:?}: not a TCP port", ps.port))?,
    };
    let (listener, port) = server.bind()?;
    server.port = port;
    let pid = server.spawn(listener)?;
    Ok(CriuResp {
        ps: Some(CriuPageServerInfo {
            pid: Some(pid as i32),
            port: Some(i32::from(port)),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Waits for a child (a tree restored without `rst_sibling`) and returns its raw wait
/// status.
fn wait_pid(req: &CriuReq) -> Result<CriuResp, String> {
    use nix::sys::wait::{waitpid, WaitStatus};
    let pid = req.pid.ok_or("WAIT_PID without pid")? as i32;
    let status = loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => break (code & 0xff) << 8,
            Ok(WaitStatus::Signaled(_, sig, core)) => {
                break sig as i32 | if core { 0x80 } else { 0 }
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("wait for pid {pid}: {e}")),
        }
    };
    Ok(CriuResp {
        status: Some(status),
        ..Default::default()
    })
}
