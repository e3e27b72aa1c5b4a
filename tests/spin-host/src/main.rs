//! `spin-test-host MANIFEST [ADDR]`: serves a Spin HTTP component the way `spin up` would (see
//! the library). Prints `ready http://ADDR/`, then the component's stdout. ADDR defaults to
//! `127.0.0.1:0` (a free port).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(manifest) = args.first() else {
        eprintln!("usage: spin-test-host MANIFEST [ADDR]");
        std::process::exit(2);
    };
    let addr = args.get(1).map(String::as_str).unwrap_or("127.0.0.1:0");
    match spin_test_host::start(std::path::Path::new(manifest), addr, true) {
        Ok(server) => {
            println!("ready http://{}/", server.addr);
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            eprintln!("spin-test-host: {e}");
            std::process::exit(1);
        }
    }
}
