//! The comparison server: actix-web on one worker with one handler that reads the body and answers 200. The gap
//! between it and the daemon is what authentication, the journal, the actors and the paper exchange cost.

use std::net::SocketAddr;

use actix_web::{web, App, HttpResponse, HttpServer};

/// Serves until SIGINT or SIGTERM.
pub fn serve(addr: SocketAddr) -> std::io::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| App::new().default_service(web::to(read_and_answer)))
            .workers(1)
            .bind(addr)?
            .run()
            .await
    })
}

async fn read_and_answer(body: web::Bytes) -> HttpResponse {
    std::hint::black_box(body);
    HttpResponse::Ok().finish()
}
