//! The ARM template (infra/azure/main.json) carries exactly the table `logrelay schema` defines:
//! columns, stream declaration, transform, stream and table names. main.bicep is held equal to
//! main.json by scripts/lint-infra.sh (pycep parse + comparison).

use logrelay_core::schema::{self, DEFAULT_STREAM, DEFAULT_TABLE, TRANSFORM_KQL};
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
        .filter(|r| {
            r["properties"]["roleDefinitionId"]
                .as_str()
                .is_some_and(|id| id.contains("variables('monitoringMetricsPublisherRoleId')"))
        })
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

fn resources<'a>(template: &'a Value, kind: &str) -> Vec<&'a Value> {
    template["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("main.json: resources is not an array"))
        .iter()
        .filter(|r| r["type"] == kind)
        .collect()
}

fn app_settings(template: &Value) -> Vec<(String, String)> {
    let site = resource(template, "Microsoft.Web/sites");
    site["properties"]["siteConfig"]["appSettings"]
        .as_array()
        .unwrap_or_else(|| panic!("the Function App has no appSettings list"))
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                s["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The functions of the Function App package (function folder names after issue 13).
const FUNCTIONS: [&str; 4] = ["events", "queue_events", "blob_events", "eventhub_events"];

#[test]
fn the_function_app_runs_on_flex_consumption_with_the_custom_handler_runtime() {
    let template = template();
    let plan = resource(&template, "Microsoft.Web/serverfarms");
    assert_eq!(
        plan["sku"],
        serde_json::json!({"name": "FC1", "tier": "FlexConsumption"})
    );
    let site = resource(&template, "Microsoft.Web/sites");
    let config = &site["properties"]["functionAppConfig"];
    assert_eq!(config["runtime"]["name"], "custom");
    assert_eq!(config["deployment"]["storage"]["type"], "blobContainer");
    assert_eq!(
        config["deployment"]["storage"]["authentication"]["type"], "SystemAssignedIdentity",
        "the package is read with the managed identity, not a connection string"
    );
    // Flex Consumption: 40 is the lowest maximum scale; 512, 2048 and 4096 MB the instance sizes.
    assert_eq!(
        parameter_default(&template, "functionAppMaximumInstanceCount"),
        40
    );
    assert_eq!(
        template["parameters"]["functionAppInstanceMemoryMB"]["allowedValues"],
        serde_json::json!([512, 2048, 4096])
    );
}

#[test]
fn the_function_app_reaches_its_storage_with_its_identity_and_no_key() {
    let template = template();
    let settings = app_settings(&template);
    let names: Vec<&str> = settings.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"AzureWebJobsStorage__accountName"));
    for deprecated in [
        "AzureWebJobsStorage",
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    ] {
        assert!(
            !names.contains(&deprecated),
            "{deprecated} is a key-based or Flex-deprecated setting"
        );
    }
    let storage = resource(&template, "Microsoft.Storage/storageAccounts");
    assert_eq!(storage["properties"]["allowSharedKeyAccess"], false);
    // Storage Blob Data Owner, Storage Queue Data Contributor, Storage Account Contributor: the
    // roles Microsoft Learn lists for host storage with an identity and a blob trigger.
    let roles: Vec<&Value> = resources(&template, "Microsoft.Authorization/roleAssignments")
        .into_iter()
        .filter(|r| {
            r["scope"] == "[format('Microsoft.Storage/storageAccounts/{0}', variables('storageAccountName'))]"
        })
        .map(|r| &r["properties"]["roleDefinitionId"])
        .collect();
    let ids: Vec<&Value> = [
        "storageBlobDataOwnerRoleId",
        "storageQueueDataContributorRoleId",
        "storageAccountContributorRoleId",
    ]
    .iter()
    .map(|v| &template["variables"][v])
    .collect();
    assert_eq!(
        ids,
        [
            "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
            "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
            "17d1049b-9a84-46fb-8f53-869881c3d3ab"
        ]
    );
    assert_eq!(roles.len(), 3, "{roles:?}");
}

#[test]
fn every_app_setting_name_is_one_the_functions_host_honours() {
    let template = template();
    for (name, _) in app_settings(&template) {
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_'),
            "{name}: app setting names may hold only letters, digits, periods and underscores"
        );
        if let Some(function) = name
            .strip_prefix("AzureWebJobs.")
            .and_then(|rest| rest.strip_suffix(".Disabled"))
        {
            assert!(FUNCTIONS.contains(&function), "{name} names no function");
        }
    }
}

#[test]
fn the_event_hub_function_is_disabled_with_its_settings_resolvable_until_a_hub_is_named() {
    let template = template();
    let settings = app_settings(&template);
    let get = |name: &str| {
        settings
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no app setting {name}"))
    };
    assert_eq!(
        get("AzureWebJobs.eventhub_events.Disabled"),
        "[if(variables('eventHubConfigured'), 'false', 'true')]"
    );
    assert_eq!(
        template["variables"]["eventHubConfigured"],
        "[and(not(empty(parameters('eventHubNamespace'))), not(empty(parameters('eventHubName'))))]"
    );
    assert_eq!(parameter_default(&template, "eventHubNamespace"), "");
    assert_eq!(parameter_default(&template, "eventHubName"), "");
    // The function.json's %KEEPER_EVENT_HUB_NAME% and its connection resolve either way.
    assert!(get("KEEPER_EVENT_HUB_NAME").contains("variables('notConfigured')"));
    assert!(get("KEEPER_EVENT_HUB_CONNECTION__fullyQualifiedNamespace")
        .contains("format('{0}.servicebus.windows.net', variables('notConfigured'))"));
    let receiver = resources(&template, "Microsoft.Authorization/roleAssignments")
        .into_iter()
        .find(|r| {
            r["properties"]["roleDefinitionId"]
                .as_str()
                .is_some_and(|id| id.contains("eventHubsDataReceiverRoleId"))
        })
        .unwrap_or_else(|| panic!("no Azure Event Hubs Data Receiver assignment"));
    assert_eq!(
        receiver["condition"],
        "[and(parameters('deployFunctionApp'), variables('eventHubConfigured'))]"
    );
    assert_eq!(
        template["variables"]["eventHubsDataReceiverRoleId"],
        "a638d3c7-ab3a-418d-83e6-5f17a39d4fde"
    );
}

#[test]
fn blob_events_gets_blob_created_events_of_its_container_through_event_grid() {
    let template = template();
    let topic = resource(&template, "Microsoft.EventGrid/systemTopics");
    assert_eq!(
        topic["properties"]["topicType"],
        "Microsoft.Storage.StorageAccounts"
    );
    let subscription = resource(
        &template,
        "Microsoft.EventGrid/systemTopics/eventSubscriptions",
    );
    let properties = &subscription["properties"];
    assert_eq!(properties["destination"]["endpointType"], "WebHook");
    let url = properties["destination"]["properties"]["endpointUrl"]
        .as_str()
        .unwrap();
    // The blob extension's webhook (Microsoft Learn, Event Grid blob trigger tutorial).
    assert!(
        url.contains("/runtime/webhooks/blobs?functionName=Host.Functions.blob_events&code={1}"),
        "{url}"
    );
    assert!(url.contains(".systemKeys.blobs_extension"), "{url}");
    assert_eq!(
        properties["filter"]["includedEventTypes"],
        serde_json::json!(["Microsoft.Storage.BlobCreated"])
    );
    let container = resources(
        &template,
        "Microsoft.Storage/storageAccounts/blobServices/containers",
    )
    .into_iter()
    .find(|c| {
        c["name"]
            .as_str()
            .is_some_and(|n| n.contains("'keeper-events'"))
    })
    .unwrap_or_else(|| panic!("no keeper-events container"));
    assert!(container["condition"].is_string());
    assert_eq!(
        properties["filter"]["subjectBeginsWith"],
        "/blobServices/default/containers/keeper-events/"
    );
    assert_eq!(
        subscription["condition"],
        "[and(parameters('deployFunctionApp'), parameters('blobEventSubscription'))]",
        "the webhook's key exists only once the code runs: a second deployment turns it on"
    );
}

#[test]
fn the_sam_alarms_watch_the_metric_the_functions_publish() {
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/aws/template.yaml"
    ))
    .expect("infra/aws/template.yaml");
    let namespace = format!(
        "Namespace: {}",
        logrelay_core::aws::forward::METRICS_NAMESPACE
    );
    assert!(
        template.contains(&namespace),
        "the SAM alarms must use `{namespace}`"
    );
    // The alarm names the metric; the functions publish it under the same name.
    let report = logrelay_core::ingest::Report {
        dead_lettered: 3,
        ..Default::default()
    };
    let line: Value = serde_json::from_str(&logrelay_core::metrics::emf_line(
        logrelay_core::aws::forward::METRICS_NAMESPACE,
        "fn",
        &report,
    ))
    .unwrap();
    assert_eq!(line["DeadLettered"], 3);
    assert!(template.contains("MetricName: DeadLettered"));
    assert!(template.contains(&format!(
        "Name: {}",
        logrelay_core::metrics::FUNCTION_NAME_DIMENSION
    )));
}
