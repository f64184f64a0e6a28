//! Shared HTTP routes. OWNER: aws helper.
