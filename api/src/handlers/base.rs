//! `GET /v2/`: the API version check.

use actix_web::HttpResponse;

pub fn get() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body("{}")
}
