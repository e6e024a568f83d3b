//! `--lazy-pages --address A --port P` of `stasis dump` and `stasis restore` (post-copy,
//! `stasis::lazy`).

use clap::Args;

#[derive(Args, Debug)]
pub struct LazyArgs {
    /// Post-copy. Dump: leave private anonymous memory out of the image, keep the tree
    /// frozen and serve those pages to the target (listening on --address/--port); the
    /// tree is killed once the target has them all. Restore: start the tree at once and
    /// fetch those pages from the source (at --address/--port) as they are touched and
    /// in the background; stasis returns (with -d) once every page is in.
    #[arg(long = "lazy-pages", requires = "lazy_port")]
    pub lazy_pages: bool,
    /// With --lazy-pages: the address the dump listens on, or the restore connects to.
    #[arg(long = "address", default_value = "0.0.0.0", requires = "lazy_pages")]
    pub lazy_address: String,
    /// With --lazy-pages: the TCP port.
    #[arg(long = "port", id = "lazy_port", requires = "lazy_pages")]
    pub lazy_port: Option<u16>,
}

/// `--lazy-pages` of `stasis dump`: its `--address`/`--port` are those of the page
/// server's arguments (`migrate::PageServerArgs`), one pair of flags for both.
#[derive(Args, Debug, Default)]
pub struct LazyDumpArgs {
    /// Post-copy: leave private anonymous memory out of the image, keep the tree frozen
    /// and serve those pages to the target (listening on --address, default 0.0.0.0,
    /// and --port); the tree is killed once the target has them all.
    #[arg(long = "lazy-pages")]
    pub lazy_pages: bool,
}

/// What clap gives when none of these options is there (`main.rs` relies on it).
impl Default for LazyArgs {
    fn default() -> Self {
        LazyArgs {
            lazy_pages: false,
            lazy_address: "0.0.0.0".into(),
            lazy_port: None,
        }
    }
}

impl LazyArgs {
    /// `(address, port)` when --lazy-pages was given.
    pub fn endpoint(&self) -> Option<(String, u16)> {
        let port = self.lazy_port?;
        self.lazy_pages.then(|| (self.lazy_address.clone(), port))
    }
}
