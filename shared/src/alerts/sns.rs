//! Notifications through Amazon SNS: the AWS-native way to email (a topic with email subscribers; also
//! SMS, Lambda or SQS subscribers), chosen over SES because a topic needs no verified sender identity or
//! sandbox exit, and subscribers confirm themselves by email.
//!
//! Each notification is one `Publish`: `Subject` "<Firing|Resolved|Test>: <rule name>" (at most 100
//! characters, as SNS allows), `Message` the notification's `text`, a blank line, then its JSON; a
//! `delivery_id` message attribute carries the notification id. The SDK retries throttling and transient
//! errors itself. The client comes from the AWS configuration chain (the function's role;
//! `AWS_ENDPOINT_URL_SNS` for moto); the `alerts` and `metrics` functions may publish to the account's
//! topics (template).

use aws_sdk_sns::types::MessageAttributeValue;
use serde_json::Value;

use super::webhook::{Outcome, Sender};
use crate::error::{Error, FieldError};

/// Checks a topic ARN (`arn:<partition>:sns:<region>:<account>:<name>`).
pub fn check_arn(arn: &str, field: &str) -> Result<(), Error> {
    let parts: Vec<&str> = arn.split(':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "sns"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && (1..=256).contains(&parts[5].len())
        && parts[5]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(FieldError::new(
            "invalid_value",
            field,
            format!("{arn:?} is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<topic>)"),
        )))
    }
}

/// The subject line: at most 100 characters, no line breaks.
fn subject(payload: &Value) -> String {
    let kind = match payload["type"].as_str() {
        Some("alert.firing") => "Firing",
        Some("alert.resolved") => "Resolved",
        _ => "Test",
    };
    let name = payload["rule"]["name"].as_str().unwrap_or("alert");
    let mut s: String = format!("{kind}: {name}")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().count() > 100 {
        s = s.chars().take(99).collect::<String>() + "…";
    }
    s
}

/// Publishes `payload` to `topic_arn`.
pub async fn publish(
    sender: &Sender,
    topic_arn: &str,
    delivery_id: &str,
    payload: &Value,
) -> Outcome {
    let client = sender
        .sns
        .get_or_init(|| async {
            let cfg = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            aws_sdk_sns::Client::new(&cfg)
        })
        .await;
    let message = format!(
        "{}\n\n{}",
        payload["text"].as_str().unwrap_or(""),
        serde_json::to_string_pretty(payload).unwrap_or_default()
    );
    let attribute = MessageAttributeValue::builder()
        .data_type("String")
        .string_value(delivery_id)
        .build();
    let mut request = client
        .publish()
        .topic_arn(topic_arn)
        .subject(subject(payload))
        .message(message);
    if let Ok(a) = attribute {
        request = request.message_attributes("delivery_id", a);
    }
    match request.send().await {
        Ok(_) => Outcome {
            delivered: true,
            attempts: 1,
            status: 200,
            detail: String::new(),
        },
        Err(e) => Outcome {
            delivered: false,
            attempts: 1,
            status: e.raw_response().map_or(0, |r| r.status().as_u16()),
            detail: format!("SNS: {}", aws_sdk_sns::error::DisplayErrorContext(&e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_arns_are_checked_and_subjects_fit_sns() {
        for (arn, ok) in [
            ("arn:aws:sns:us-east-1:123456789012:shop-alerts", true),
            ("arn:aws-cn:sns:cn-north-1:123456789012:alerts.fifo", true),
            ("arn:aws:sqs:us-east-1:123456789012:q", false),
            ("arn:aws:sns:us-east-1:1234:alerts", false),
            ("https://example.com", false),
            ("arn:aws:sns:us-east-1:123456789012:", false),
        ] {
            assert_eq!(check_arn(arn, "channels[0].topicArn").is_ok(), ok, "{arn}");
        }
        let long = serde_json::json!({"type": "alert.firing", "rule": {"name": "x".repeat(300)}});
        assert_eq!(subject(&long).chars().count(), 100);
        let resolved =
            serde_json::json!({"type": "alert.resolved", "rule": {"name": "Checkout\nbroken"}});
        assert_eq!(subject(&resolved), "Resolved: Checkout broken");
    }
}
