//! Normalization of real source records (JSON fixtures) through the shipped mappings.

use serde_json::{json, Value};
use sync_core::{normalize_record, FieldErrorCode, Mappings, Operation};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn an_hris_employee_becomes_a_canonical_employee() {
    let mappings = Mappings::builtin().unwrap();
    let record = normalize_record(
        mappings.get("hris").unwrap(),
        &fixture("hris_employee.json"),
    )
    .unwrap();
    assert_eq!(record.source, "hris");
    assert_eq!(record.external_id, "E-10442");
    assert_eq!(record.entity_type, "employee");
    assert_eq!(record.operation, Operation::Upsert);
    // 2024-05-01T07:30:00.123456Z in microseconds.
    assert_eq!(record.source_version, 1_714_548_600_123_456);
    assert_eq!(record.fields["email"], json!("grace.hopper@example.com"));
    assert_eq!(record.fields["given_name"], json!("Grace"));
    assert_eq!(record.fields["family_name"], json!("Hopper"));
    assert_eq!(record.fields["status"], json!("active"));
    assert_eq!(record.fields["hire_date"], json!("2019-07-15"));
    assert_eq!(record.fields["manager_id"], json!("E-10001"));
    assert_eq!(record.unmapped["cost_center"], json!("CC-7"));
    assert_eq!(
        record.unmapped["badge"],
        json!({"number": 4471, "site": "HQ"})
    );
    assert!(!record.unmapped.contains_key("updated_at"));
}

#[test]
fn a_crm_contact_becomes_a_canonical_contact_with_an_e164_phone() {
    let mappings = Mappings::builtin().unwrap();
    let record =
        normalize_record(mappings.get("crm").unwrap(), &fixture("crm_contact.json")).unwrap();
    assert_eq!(record.external_id, "512");
    assert_eq!(record.fields["email"], json!("ada@analytical.engine"));
    assert_eq!(record.fields["phone"], json!("+14155552671"));
    assert_eq!(record.fields["lifecycle_stage"], json!("lead"));
    assert_eq!(record.unmapped["properties.favorite_color"], json!("green"));
    assert_eq!(record.unmapped["createdAt"], json!("2023-11-02T10:00:00Z"));
    assert!(!record.unmapped.contains_key("properties.email"));
    assert!(!record.unmapped.contains_key("archived"));
}

#[test]
fn an_archived_contact_is_a_delete_carrying_only_id_and_version() {
    let mappings = Mappings::builtin().unwrap();
    let archived = json!({"id": "512", "updatedAt": "2024-06-01T00:00:00Z", "archived": true});
    let record = normalize_record(mappings.get("crm").unwrap(), &archived).unwrap();
    assert_eq!(record.operation, Operation::Delete);
    assert!(record.fields.is_empty());
}

#[test]
fn every_field_error_is_reported_at_once_with_its_path() {
    let mappings = Mappings::builtin().unwrap();
    let bad = json!({
        "employee_id": "",
        "email": "not-an-address",
        "first_name": {"nested": true},
        "employment_status": "retired",
        "hire_date": "15/07/2019",
        "updated_at": "yesterday"
    });
    let errors = normalize_record(mappings.get("hris").unwrap(), &bad).unwrap_err();
    let by_field: Vec<(&str, FieldErrorCode)> =
        errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
    for expected in [
        ("employee_id", FieldErrorCode::Missing),
        ("updated_at", FieldErrorCode::InvalidTimestamp),
        ("email", FieldErrorCode::InvalidEmail),
        ("first_name", FieldErrorCode::WrongType),
        ("last_name", FieldErrorCode::Missing),
        ("employment_status", FieldErrorCode::UnknownValue),
        ("hire_date", FieldErrorCode::InvalidDate),
    ] {
        assert!(
            by_field.contains(&expected),
            "{expected:?} not in {by_field:?}"
        );
    }
    let not_object = normalize_record(mappings.get("hris").unwrap(), &json!([1, 2])).unwrap_err();
    assert_eq!(not_object[0].code, FieldErrorCode::NotAnObject);
}

#[test]
fn a_third_source_is_a_yaml_file_not_code() {
    let erp_yaml = std::fs::read_to_string(format!(
        "{}/tests/fixtures/erp_supplier_mapping.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut files: Vec<(&str, &str)> = sync_core::mapping::BUILTIN_MAPPINGS.to_vec();
    files.push(("erp_supplier_mapping.yaml", &erp_yaml));
    let mappings = Mappings::from_files(&files).unwrap();
    assert_eq!(mappings.sources(), vec!["crm", "erp", "hris"]);
    let erp = mappings.get("erp").unwrap();
    let supplier = json!({"supplier_no": 77, "revision": "12", "contact": {"email": "Sales@Acme.test"}, "registered": "2020-01-02"});
    let record = normalize_record(erp, &supplier).unwrap();
    assert_eq!(record.external_id, "77");
    assert_eq!(record.source_version, 12);
    assert_eq!(record.fields["email"], json!("sales@acme.test"));
    let purged = json!({"supplier_no": 77, "revision": 13, "status": "purged"});
    assert_eq!(
        normalize_record(erp, &purged).unwrap().operation,
        Operation::Delete
    );
    let bad_version = json!({"supplier_no": 77, "revision": -1, "contact": {"email": "a@b.co"}});
    assert_eq!(
        normalize_record(erp, &bad_version).unwrap_err()[0].code,
        FieldErrorCode::InvalidVersion
    );
}
