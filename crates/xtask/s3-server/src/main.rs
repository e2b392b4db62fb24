//! `dbkit-s3-server --host H --port P --access-key K --secret-key-file FILE ROOT`: serves the
//! folder ROOT as S3 (each sub-folder a bucket) with SigV4 authentication, through s3s-fs.

use std::path::PathBuf;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

struct Options {
    host: String,
    port: u16,
    access_key: String,
    secret_key_file: PathBuf,
    root: PathBuf,
}

fn parse() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let (mut host, mut port, mut access_key, mut secret_key_file, mut root) = (None, None, None, None, None);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--host" => host = Some(value()?),
            "--port" => port = Some(value()?.parse::<u16>().map_err(|e| format!("--port: {e}"))?),
            "--access-key" => access_key = Some(value()?),
            "--secret-key-file" => secret_key_file = Some(PathBuf::from(value()?)),
            other if !other.starts_with('-') && root.is_none() => root = Some(PathBuf::from(other)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Options {
        host: host.unwrap_or_else(|| "127.0.0.1".into()),
        port: port.ok_or("--port is required")?,
        access_key: access_key.ok_or("--access-key is required")?,
        secret_key_file: secret_key_file.ok_or("--secret-key-file is required")?,
        root: root.ok_or("the root folder is required")?,
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dbkit-s3-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let options = parse()?;
    let secret = std::fs::read_to_string(&options.secret_key_file)
        .map_err(|e| format!("cannot read {}: {e}", options.secret_key_file.display()))?;
    let fs = s3s_fs::FileSystem::new(&options.root).map_err(|e| format!("{}: {e:?}", options.root.display()))?;
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(options.access_key, secret.trim().to_owned()));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind((options.host.as_str(), options.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", options.host, options.port))?;
    eprintln!("dbkit-s3-server: serving {} on http://{}:{}", options.root.display(), options.host, options.port);
    let server = Builder::new(TokioExecutor::new());
    loop {
        let (socket, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("dbkit-s3-server: accept: {e}");
                continue;
            }
        };
        let connection = server.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
