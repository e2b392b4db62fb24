//! Repository automation, run as `cargo xtask <command>`.
//!
//! - `stack up [SERVICE...]`, `stack down`, `stack status`, `stack env`: the local stack of real
//!   servers that the binaries and the tests talk to (see `stack.rs`).
//! - `test [ARGS...]`: brings the stack up and runs `cargo test --workspace ARGS` with its
//!   environment; the `pg-migrate` and `datastores` suites start their servers as containers
//!   (see `test_images.rs`).
//! - `image [--profile P] [--output FILE] [--smoke]`: the Job image `dbkit/jobs:<version>` with every
//!   binary and the PostgreSQL client tools, as an OCI archive loaded into podman (see `image.rs`);
//!   `image --rootfs DIR` writes its files instead (the `Containerfile` runs this). The smoke
//!   test also checks deploy/'s commands and the Containerfile against it (`image_checks.rs`).
//! - `test-images`, `test-containers`: images of the stack's servers, and the `pg-migrate` and
//!   `datastores` suites run against them through testcontainers (see `test_images.rs`).
//!
//! This crate has no dependencies so that it builds in seconds on a fresh machine.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod image;
mod image_checks;
mod process;
mod stack;
mod test_images;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  stack up [SERVICE...]   install what is missing and start the services (default: all)
  stack down              stop the processes the stack started
  stack status            show each service, its pid and whether it answers
  stack env               print the environment variables the binaries and tests read
  test [ARGS...]          stack up, then `cargo test --workspace ARGS` with the stack's environment;
                          the pg-migrate and datastores suites start their servers through
                          testcontainers (podman's Docker API, images of `test-images`)
  image [OPTIONS]         build the Job image dbkit/jobs:<version> (OCI archive, loaded into podman);
                          --smoke also runs it against the stack (`cargo xtask image --help`)
  test-images             build images of the stack's servers for testkit's DBKIT_TESTCONTAINERS=local
  test-containers [ARGS]  run the pg-migrate and datastores suites in those containers through
                          podman's Docker API (`cargo xtask test-containers --help`)

services: postgres, redis, milvus, kafka, mongodb, s3
cache:    $DBKIT_CACHE (default /var/cache/dbkit) holds installed servers, their data and logs";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let layout = stack::Layout::from_env();
    let result = match args.as_slice() {
        ["stack", "up", services @ ..] => stack::parse_services(services).and_then(|s| stack::up(&layout, &s)),
        ["stack", "down"] => stack::down(&layout),
        ["stack", "status"] => stack::status(&layout),
        ["stack", "env"] => {
            print!("{}", stack::env_script(&layout));
            Ok(())
        }
        ["test", rest @ ..] => run_tests(&layout, rest),
        ["image", rest @ ..] => image::parse_args(rest).and_then(|options| image::run(&layout, &options)),
        ["test-images"] => test_images::build_all(&layout),
        ["test-containers", rest @ ..] => {
            test_images::parse_args(rest).and_then(|options| test_images::run(&layout, &options))
        }
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run_tests(layout: &stack::Layout, extra: &[&str]) -> Result<(), String> {
    stack::up(layout, stack::Service::ALL)?;
    test_images::test_workspace(layout, extra)
}
