//! AWS adapters. OWNER: aws helper.
