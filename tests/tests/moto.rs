//! Real S3 → SQS object-created notifications (moto's server): the lake objects ingest writes
//! produce notifications whose payloads — keys URL-encoded, delivered through SQS, sometimes
//! twice — the unify entry point reads, applying each object once.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
    QueueConfiguration, S3KeyFilter,
};
use braid_core::collect::forward::ForwardBatch;
use braid_tests::{MotoServer, ingest_forward};
use braid_unifier::lake::feed::{CountEvents, unify_objects};
use braid_unifier::lake::store::{S3Store, s3_client};
use braid_unifier::lambda::keys_from_notification;
use serde_json::{Value, json};
use time::OffsetDateTime;

#[tokio::test]
async fn unify_reads_real_s3_notifications_through_sqs() {
    let dir = tempfile::tempdir().unwrap();
    let moto = MotoServer::start(dir.path());
    let queue = moto.sqs("CreateQueue", &json!({"QueueName": "unify"}));
    let queue_url = queue["QueueUrl"].as_str().unwrap().to_owned();
    let attributes = moto.sqs(
        "GetQueueAttributes",
        &json!({"QueueUrl": queue_url, "AttributeNames": ["QueueArn"]}),
    );
    let queue_arn = attributes["Attributes"]["QueueArn"].as_str().unwrap();

    let credentials = Credentials::new("test", "test", None, None, "test");
    let client = s3_client("us-east-1", credentials, Some(&moto.endpoint));
    client.create_bucket().bucket("lake").send().await.unwrap();
    let only_lake_objects = NotificationConfigurationFilter::builder()
        .key(
            S3KeyFilter::builder()
                .filter_rules(
                    FilterRule::builder()
                        .name(FilterRuleName::Prefix)
                        .value("raw/")
                        .build(),
                )
                .filter_rules(
                    FilterRule::builder()
                        .name(FilterRuleName::Suffix)
                        .value(".ndjson.gz")
                        .build(),
                )
                .build(),
        )
        .build();
    client
        .put_bucket_notification_configuration()
        .bucket("lake")
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(queue_arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .filter(only_lake_objects)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let store = S3Store::new(client, "lake");

    // Ingest writes one raw/ object (and one failed/ object, which is not notified).
    let now = OffsetDateTime::now_utc();
    let events = concat!(
        r#"{"type":"track","event":"A","userId":"u","messageId":"moto-1"}"#,
        "\n",
        r#"{"type":"track","userId":"u","messageId":"moto-2"}"#,
        "\n"
    );
    let body = ForwardBatch::write("shop", now, events.as_bytes(), b"");
    let reply = ingest_forward(&store, "s", &body, now).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let received = moto.sqs(
        "ReceiveMessage",
        &json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 2}),
    );
    let messages = received["Messages"].as_array().cloned().unwrap_or_default();
    // As S3 does, moto sends an s3:TestEvent when the configuration is set, then one
    // notification for the raw/ object (keys fully URL-encoded, `/` included).
    assert_eq!(messages.len(), 2, "{received}");
    // The Lambda SQS event that carries them; delivered twice, as SQS may.
    let records: Vec<Value> = messages
        .iter()
        .map(|m| json!({"eventSource": "aws:sqs", "messageId": m["MessageId"], "body": m["Body"]}))
        .collect();
    let event = json!({"Records": records});
    let keys = keys_from_notification(&event).unwrap();
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].starts_with("raw/workspace=shop/date="),
        "decoded: {}",
        keys[0]
    );
    let first = unify_objects(&store, &CountEvents, &keys, now)
        .await
        .unwrap();
    assert_eq!((first.applied, first.events), (1, 1));
    let again = unify_objects(&store, &CountEvents, &keys, now)
        .await
        .unwrap();
    assert_eq!((again.applied, again.already_applied), (0, 1));
}
