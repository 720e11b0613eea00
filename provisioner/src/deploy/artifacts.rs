//! Where function zips live in the artifact bucket: under content-addressed keys
//! (`functions/<function>/<sha256>.zip`), so a zip already there is never uploaded
//! again and every release that uses it shares it. The bucket itself belongs to the
//! bootstrap stack (`provisioner bootstrap`); nothing here creates it.

/// Key prefix of the function zips.
pub const FUNCTIONS_PREFIX: &str = "functions/";
