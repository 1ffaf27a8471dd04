//! Hostile adapter: opens sockets and resolves names through WASI, around the `http` capability; every attempt must fail.

use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};

use airlock_sdk::{
    Adapter, AdapterError, Config, Connection, Credentials, Params, ProvisionResult, Result,
    StatusDetail, json,
};

struct OpenSocket;

fn outcome<T>(result: std::io::Result<T>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(error) => format!("err: {error}"),
    }
}

impl Adapter for OpenSocket {
    fn validate_config(_: &Config) -> Result<()> {
        Ok(())
    }

    /// Reports each attempt in `metadata`: `ok`, or `err: …`.
    fn create(_: &Config, _: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        let metadata = json!({
            "tcpConnect": outcome(TcpStream::connect("127.0.0.1:22")),
            "tcpListen": outcome(TcpListener::bind("127.0.0.1:0")),
            "udpBind": outcome(UdpSocket::bind("0.0.0.0:0")),
            "resolve": match ("localhost", 80).to_socket_addrs() {
                Ok(addresses) => format!("ok: {:?}", addresses.collect::<Vec<_>>()),
                Err(error) => format!("err: {error}"),
            },
        });
        Ok(ProvisionResult::created("socket-1", Connection::new())
            .with_metadata(metadata)
            .with_idempotency_key(key))
    }

    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        Err(AdapterError::permanent("no status"))
    }

    fn destroy(_: &Config, _: &str) -> Result<()> {
        Ok(())
    }

    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        Err(AdapterError::permanent("no credentials"))
    }
}

airlock_sdk::export!(OpenSocket);
