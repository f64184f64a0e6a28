//! The ARM template (infra/azure/main.json) carries exactly the table `logrelay schema` defines:
//! columns, stream declaration, transform, stream and table names. main.bicep is held equal to
//! main.json by scripts/lint-infra.sh (pycep parse + comparison).

use logrelay::schema::{self, DEFAULT_STREAM, DEFAULT_TABLE, TRANSFORM_KQL};
use serde_json::Value;

const MAIN_JSON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/azure/main.json");

fn template() -> Value {
    let text = std::fs::read_to_string(MAIN_JSON).unwrap_or_else(|e| panic!("{MAIN_JSON}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{MAIN_JSON} is not JSON: {e}"))
}

fn resource<'a>(template: &'a Value, kind: &str) -> &'a Value {
    template["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("main.json: resources is not an array"))
        .iter()
        .find(|r| r["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} resource in main.json"))
}

/// Resolves `[variables('name')]` against the template's variables.
fn variable<'a>(template: &'a Value, expression: &Value) -> &'a Value {
    let text = expression
        .as_str()
        .unwrap_or_else(|| panic!("{expression} is not an expression string"));
    let name = text
        .strip_prefix("[variables('")
        .and_then(|rest| rest.strip_suffix("')]"))
        .unwrap_or_else(|| panic!("{text} is not [variables('...')]"));
    &template["variables"][name]
}

fn parameter_default<'a>(template: &'a Value, name: &str) -> &'a Value {
    &template["parameters"][name]["defaultValue"]
}

#[test]
fn the_table_columns_are_the_schema_columns_in_order() {
    let template = template();
    let table = resource(&template, "Microsoft.OperationalInsights/workspaces/tables");
    let columns = variable(&template, &table["properties"]["schema"]["columns"]);
    assert_eq!(columns, &schema::table_columns());
    assert!(columns
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "EventId"));
    assert_eq!(table["properties"]["plan"], "Analytics");
}

#[test]
fn the_dcr_declares_the_schema_stream() {
    let template = template();
    let dcr = resource(&template, "Microsoft.Insights/dataCollectionRules");
    assert_eq!(
        dcr["kind"], "Direct",
        "only a Direct DCR has its own ingestion endpoint"
    );
    let declarations = dcr["properties"]["streamDeclarations"].as_object().unwrap();
    assert_eq!(declarations.len(), 1);
    let (key, declaration) = declarations.iter().next().unwrap();
    assert_eq!(key, "[parameters('streamName')]");
    assert_eq!(parameter_default(&template, "streamName"), DEFAULT_STREAM);
    let columns = variable(&template, &declaration["columns"]);
    assert_eq!(columns, &schema::stream_declaration()["columns"]);
}

#[test]
fn the_data_flow_keeps_the_rows_and_writes_the_default_table() {
    let template = template();
    let dcr = resource(&template, "Microsoft.Insights/dataCollectionRules");
    let flows = dcr["properties"]["dataFlows"].as_array().unwrap();
    assert_eq!(flows.len(), 1);
    let flow = &flows[0];
    assert_eq!(flow["transformKql"], TRANSFORM_KQL);
    assert_eq!(
        flow["streams"],
        serde_json::json!(["[parameters('streamName')]"])
    );
    assert_eq!(
        variable(&template, &flow["outputStream"]),
        "[format('Custom-{0}', parameters('tableName'))]"
    );
    assert_eq!(parameter_default(&template, "tableName"), DEFAULT_TABLE);
    let document = schema::document(DEFAULT_STREAM, DEFAULT_TABLE);
    assert_eq!(document["outputStream"], format!("Custom-{DEFAULT_TABLE}"));
    let destination = flow["destinations"][0].as_str().unwrap();
    assert_eq!(
        dcr["properties"]["destinations"]["logAnalytics"][0]["name"],
        destination
    );
}

#[test]
fn the_endpoint_output_is_the_full_logs_ingestion_url() {
    let template = template();
    let value = template["outputs"]["logsIngestionEndpoint"]["value"]
        .as_str()
        .unwrap();
    assert!(
        value.contains("/dataCollectionRules/{1}/streams/{2}?api-version={3}"),
        "{value}"
    );
    assert!(value.contains(".endpoints.logsIngestion"), "{value}");
    assert!(value.contains(".logsIngestion.endpoint"), "{value}");
    assert!(value.contains("parameters('streamName')"), "{value}");
    assert_eq!(template["variables"]["ingestionApiVersion"], "2023-01-01");
}

#[test]
fn the_sender_gets_monitoring_metrics_publisher_on_the_dcr() {
    let template = template();
    let assignments: Vec<&Value> = template["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "Microsoft.Authorization/roleAssignments")
        .collect();
    assert_eq!(
        assignments.len(),
        2,
        "the app registration and the Function App"
    );
    assert_eq!(
        template["variables"]["monitoringMetricsPublisherRoleId"],
        "3913510d-42f4-4e42-8a64-420c390055eb"
    );
    for assignment in assignments {
        assert_eq!(
            assignment["scope"],
            "[format('Microsoft.Insights/dataCollectionRules/{0}', parameters('dcrName'))]"
        );
    }
}

#[test]
fn the_sam_alarms_watch_the_metric_the_functions_publish() {
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/aws/template.yaml"
    ))
    .expect("infra/aws/template.yaml");
    let namespace = format!("Namespace: {}", logrelay::aws::forward::METRICS_NAMESPACE);
    assert!(
        template.contains(&namespace),
        "the SAM alarms must use `{namespace}`"
    );
    // The alarm names the metric; the functions publish it under the same name.
    let report = logrelay::ingest::Report {
        dead_lettered: 3,
        ..Default::default()
    };
    let line: Value = serde_json::from_str(&logrelay::metrics::emf_line(
        logrelay::aws::forward::METRICS_NAMESPACE,
        "fn",
        &report,
    ))
    .unwrap();
    assert_eq!(line["DeadLettered"], 3);
    assert!(template.contains("MetricName: DeadLettered"));
    assert!(template.contains(&format!(
        "Name: {}",
        logrelay::metrics::FUNCTION_NAME_DIMENSION
    )));
}
