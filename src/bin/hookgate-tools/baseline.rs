//! The baseline of `scripts/bench-ingest.sh`: what hookgate's ingest path is measured against.

use std::sync::Arc;

/// The baseline of `scripts/bench-ingest.sh`: a minimal actix handler doing one Redis EVAL
/// (SET NX EX + XADD) per request, nothing else.
pub async fn baseline_server(
    bind: &str,
    topology: &hookgate::config::RedisTopology,
) -> anyhow::Result<()> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    const LUA: &str = "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', 60) then \
        return redis.call('XADD', KEYS[2], '*', 'body', ARGV[2]) end return false";
    let settings = hookgate::config::RedisSettings {
        topology: topology.clone(),
        key_prefix: "hookgate-baseline".into(),
        pool_size: 16,
        enqueue_timeout_ms: 2000,
        min_replicas_acked: 0,
        replica_ack_timeout_ms: 500,
    };
    let pool = hookgate::queue::pool(&settings)?;
    let script = Arc::new(redis::Script::new(LUA));
    HttpServer::new(move || {
        let pool = pool.clone();
        let script = script.clone();
        App::new().default_service(web::to(move |body: web::Bytes| {
            let pool = pool.clone();
            let script = script.clone();
            async move {
                let id = uuid::Uuid::now_v7().to_string();
                let Ok(mut conn) = pool.get().await else {
                    return HttpResponse::ServiceUnavailable().finish();
                };
                let res: redis::RedisResult<Option<String>> = script
                    .key(format!("hookgate-baseline:{{b}}:dedup:{id}"))
                    .key("hookgate-baseline:{b}:stream")
                    .arg(&id)
                    .arg(body.as_ref())
                    .invoke_async(&mut *conn)
                    .await;
                match res {
                    Ok(_) => {
                        HttpResponse::Ok().json(serde_json::json!({"status": "queued", "id": id}))
                    }
                    Err(_) => HttpResponse::ServiceUnavailable().finish(),
                }
            }
        }))
    })
    .bind(bind)?
    .run()
    .await?;
    Ok(())
}
