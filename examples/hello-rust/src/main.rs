//! hello-rust: a Flint function in Rust using only the standard library.
//!
//! It listens on `$PORT`, answers `GET` with a greeting and `POST` with the
//! byte count of the body, one thread per connection with keep-alive. A
//! `sleep_ms=N` query parameter (at most 60000) delays the answer, to stand
//! for slow work in drain and timeout tests. Its
//! manifest sets `concurrency: 4`, so the gateway never sends one replica
//! more than four requests at once.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let host = if std::env::var_os("FLINT_DEV").is_some() {
        "127.0.0.1"
    } else {
        "0.0.0.0"
    };
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".to_owned());
    let listener = TcpListener::bind((host, port))?;
    for stream in listener.incoming() {
        let stream = stream?;
        let greeting = greeting.clone();
        std::thread::spawn(move || {
            if let Err(err) = serve(stream, &greeting) {
                eprintln!("connection error: {err}");
            }
        });
    }
    Ok(())
}

/// Serves HTTP/1.1 requests on one connection until the client closes it.
fn serve(stream: TcpStream, greeting: &str) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or("/").to_owned();
        let mut content_length = 0usize;
        let mut close = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("connection")
                    && value.eq_ignore_ascii_case("close")
                {
                    close = true;
                }
            }
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body)?;
        if let Some(ms) = sleep_ms(&path) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        let reply = match method.as_str() {
            "POST" => format!("{{\"received_bytes\":{}}}\n", body.len()),
            _ => format!("{greeting} from Flint! (rust, path {path})\n"),
        };
        write!(
            writer,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\r\n{reply}",
            reply.len()
        )?;
        writer.flush()?;
        if close {
            return Ok(());
        }
    }
}

/// The `sleep_ms` query parameter of `path`, at most a minute.
fn sleep_ms(path: &str) -> Option<u64> {
    let (_, query) = path.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("sleep_ms="))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| ms.min(60_000))
}
