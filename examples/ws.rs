//! A small WebSocket client for trying weir out: connects, sends each line of standard input
//! as a text message and prints what comes back.
//!
//! ```text
//! cargo run --release --example ws -- ws://127.0.0.1:8080/chat demo.local
//! ```
//!
//! The optional second argument is the Host to send (weir routes on it).

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: ws URL [HOST]")?;
    let mut request = url.into_client_request()?;
    if let Some(host) = args.next() {
        request.headers_mut().insert("host", host.parse()?);
    }
    let (ws, response) = tokio_tungstenite::connect_async(request).await?;
    eprintln!("connected: {}", response.status());
    let (mut sink, mut stream) = ws.split();
    let printer = tokio::spawn(async move {
        while let Some(message) = stream.next().await {
            match message {
                Ok(Message::Text(text)) => println!("{text}"),
                Ok(Message::Close(frame)) => {
                    eprintln!("closed by the server: {frame:?}");
                    break;
                }
                Ok(_) => {}
                Err(error) => {
                    eprintln!("error: {error}");
                    break;
                }
            }
        }
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        sink.send(Message::text(line)).await?;
    }
    sink.send(Message::Close(None)).await?;
    printer.await?;
    Ok(())
}
