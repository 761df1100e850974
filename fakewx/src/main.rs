//! `quiver-fakewx --listen 127.0.0.1:0`: prints `listening http://ADDR` and serves the fake
//! WeChat until killed. A test tool (see `fakewx/README.md`); it refuses non-loopback addresses.

use std::net::SocketAddr;

fn usage() -> ! {
    eprintln!("usage: quiver-fakewx [--listen 127.0.0.1:PORT]");
    std::process::exit(2)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut listen = "127.0.0.1:0".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().unwrap_or_else(|| usage()),
            "-h" | "--help" => usage(),
            other => {
                eprintln!("quiver-fakewx: unknown argument {other:?}");
                usage()
            }
        }
    }
    let addr: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("quiver-fakewx: --listen {listen:?}: {e}");
            std::process::exit(2)
        }
    };
    if !addr.ip().is_loopback() {
        eprintln!("quiver-fakewx: a test tool listens on loopback only, not {addr}");
        std::process::exit(2)
    }
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("quiver-fakewx: cannot listen on {addr}: {e}");
            std::process::exit(1)
        }
    };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    // The one line on stdout: the test harness reads the address from it.
    #[allow(clippy::print_stdout)]
    {
        println!("listening http://{local}");
    }
    if let Err(e) = quiver_fakewx::serve(listener).await {
        eprintln!("quiver-fakewx: {e}");
        std::process::exit(1)
    }
}
