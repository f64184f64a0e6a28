//! AWS adapters: S3 notices and objects, the S3 dead letter, Secrets Manager. OWNER: aws helper.

pub mod notification;
