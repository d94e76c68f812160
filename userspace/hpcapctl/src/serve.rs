// SPDX-License-Identifier: MIT
//! `hpcapctl serve`: a Prometheus exporter. Serves `/metrics` over HTTP
//! (tiny_http), the same text `hpcapctl stats --prometheus` prints
//! ([`crate::metrics`]), read afresh at every scrape.
//!
//! Each scrape opens the sources (every /dev/hpcapN and software source
//! found, or the ones named), reads their info and statistics and closes
//! them: opening attaches no listener, so scraping never holds the capture
//! back, and it needs only read permission. Devices that appear or go away
//! (bind, unbind, rmmod) are picked up by the next scrape; a named source
//! that cannot be read shows as `hpcap_source_up{path} 0` and is logged
//! once per change of its error.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::metrics::{render, Reading};

/// Content type of the text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `ADDR` of `--listen`: `HOST:PORT`, `[V6]:PORT`, or `:PORT` (every IPv4
/// address; `[::]:PORT` for every address where IPv6 is enabled).
pub(crate) fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let full = if let Some(port) = s.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else {
        s.to_string()
    };
    let mut addrs = full
        .to_socket_addrs()
        .map_err(|e| format!("'{s}': {e} (give HOST:PORT, [IPV6]:PORT or :PORT)"))?;
    addrs
        .next()
        .ok_or_else(|| format!("'{s}' resolves to no address"))
}

/// Reads the sources for one scrape: the named ones, or every one found.
struct Scraper {
    sources: Vec<PathBuf>,
    /// Last error logged per path, so a lasting failure is logged once.
    errors: HashMap<PathBuf, String>,
}

impl Scraper {
    fn scrape(&mut self) -> String {
        let paths = if self.sources.is_empty() {
            crate::discover(&[])
        } else {
            self.sources.clone()
        };
        let mut readings = Vec::new();
        let mut failed = Vec::new();
        for p in paths {
            match Reading::read(&p) {
                Ok(r) => {
                    if self.errors.remove(&p).is_some() {
                        eprintln!("hpcapctl serve: {} can be read again", p.display());
                    }
                    readings.push(r);
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    if self.errors.get(&p) != Some(&msg) {
                        eprintln!("hpcapctl serve: {msg}");
                        self.errors.insert(p.clone(), msg);
                    }
                    failed.push(p);
                }
            }
        }
        render(&readings, &failed)
    }
}

fn header(name: &str, value: &str) -> Header {
    // Both are ASCII constants of this file.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}

fn respond(scraper: &mut Scraper, req: Request) {
    let path = req.url().split('?').next().unwrap_or("").to_string();
    // tiny_http sends no body in answer to HEAD.
    let get = matches!(req.method(), Method::Get | Method::Head);
    let resp = match (path.as_str(), get) {
        (_, false) => Response::from_string("only GET and HEAD\n")
            .with_status_code(405)
            .with_header(header("Allow", "GET, HEAD")),
        ("/metrics", true) => Response::from_string(scraper.scrape())
            .with_header(header("Content-Type", CONTENT_TYPE)),
        ("/", true) => Response::from_string(
            "hpcapctl serve: hpcap capture metrics for Prometheus at /metrics\n",
        )
        .with_header(header("Content-Type", "text/plain; charset=utf-8")),
        (_, true) => {
            Response::from_string("not found; the metrics are at /metrics\n").with_status_code(404)
        }
    };
    // A client that went away is its own problem, not the exporter's.
    let _ = req.respond(resp);
}

/// Serves until SIGINT or SIGTERM.
pub(crate) fn run(listen: SocketAddr, sources: Vec<PathBuf>) -> Result<()> {
    for p in &sources {
        // Fail early on a typo; a source that exists but cannot be read
        // (yet) is reported per scrape instead.
        if !p.exists() {
            bail!(
                "{}: no such source (give /dev/hpcapN or a software source path, or none for all)",
                p.display()
            );
        }
    }
    let server = Server::http(listen).map_err(|e| anyhow!("listening on {listen}: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .context("the server has no IP address")?;
    hpcap::util::install_stop_handlers();
    eprintln!(
        "hpcapctl serve: metrics of {} at http://{bound}/metrics",
        if sources.is_empty() {
            "every hpcap source".to_string()
        } else {
            sources
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let mut scraper = Scraper {
        sources,
        errors: HashMap::new(),
    };
    while hpcap::util::stop_requested().is_none() {
        match server.recv_timeout(Duration::from_millis(250)) {
            Ok(Some(req)) => respond(&mut scraper, req),
            Ok(None) => {}
            Err(e) => bail!("accepting connections on {bound}: {e}"),
        }
    }
    eprintln!("hpcapctl serve: stopped");
    Ok(())
}
