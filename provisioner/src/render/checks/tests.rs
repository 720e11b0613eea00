//! Tests of the template checks, on small inline templates.

use super::*;

fn check_one(body: &str) -> Vec<Finding> {
    check_stacks(&[StackTemplate {
        id: "app",
        depends_on: &[],
        body,
    }])
}

/// The only finding, failing with the full list when there is not exactly one.
fn only(findings: &[Finding]) -> &Finding {
    assert_eq!(findings.len(), 1, "expected one finding, got {findings:#?}");
    &findings[0]
}

fn with_rule<'f>(findings: &'f [Finding], rule: &str) -> Vec<&'f Finding> {
    findings.iter().filter(|f| f.rule == rule).collect()
}

const NETWORK: &str = r#"
AWSTemplateFormatVersion: "2010-09-09"
Description: network
Parameters:
  VpcCidr:
    Type: String
Resources:
  Vpc:
    Type: AWS::EC2::VPC
    Properties:
      CidrBlock: !Ref VpcCidr
      Tags:
        - Key: Name
          Value: !Sub "${AWS::StackName}-vpc"
  PrivateSubnetA:
    Type: AWS::EC2::Subnet
    Properties:
      VpcId: !Ref Vpc
      AvailabilityZone: !Select [0, !GetAZs ""]
      CidrBlock: !Select [0, !Cidr [!GetAtt Vpc.CidrBlock, 4, 8]]
Outputs:
  VpcId:
    Value: !Ref Vpc
    Export:
      Name: datasync-dev-vpc-id
  PrivateSubnetIds:
    Value: !Join [",", [!Ref PrivateSubnetA]]
    Export:
      Name: !Sub "datasync-dev:private-subnet-ids"
"#;

const DATA: &str = r#"
Parameters:
  EnvName:
    Type: String
Conditions:
  IsProd: !Equals [!Ref EnvName, prod]
  KeepData:
    Fn::Or:
      - Condition: IsProd
      - !Equals [!Ref EnvName, staging]
  DevOnly: !And [!Not [!Condition IsProd], !Not [!Condition KeepData]]
Mappings:
  Retention:
    prod:
      Days: 35
    dev:
      Days: 7
Resources:
  RecordsKey:
    Type: AWS::KMS::Key
    Properties:
      EnableKeyRotation: true
  RecordsTable:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName:
        Fn::Sub:
          - "datasync-${Env}-records"
          - Env: !Ref EnvName
      SSESpecification:
        SSEEnabled: true
        KMSMasterKeyId: !GetAtt RecordsKey.Arn
      PointInTimeRecoverySpecification:
        PointInTimeRecoveryEnabled: !If [KeepData, true, !Ref "AWS::NoValue"]
      Tags:
        - Key: retention-days
          Value: !FindInMap [Retention, !Ref EnvName, Days]
        - Key: vpc
          Value: !ImportValue datasync-dev-vpc-id
  DevTopic:
    Type: AWS::SNS::Topic
    Condition: DevOnly
Outputs:
  RecordsTableName:
    Value: {Ref: RecordsTable}
    Export: {Name: datasync-dev-records-table}
  RecordsTableArn:
    Value: {"Fn::GetAtt": [RecordsTable, Arn]}
    Export: {Name: datasync-dev-records-table-arn}
"#;

const COMPUTE: &str = r#"
Parameters:
  ArtifactBucket:
    Type: String
  WorkerCodeKey:
    Type: String
Resources:
  WorkerRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: {Service: lambda.amazonaws.com}
            Action: sts:AssumeRole
      Policies:
        - PolicyName: records
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: dynamodb:PutItem
                Resource: {"Fn::ImportValue": datasync-dev-records-table-arn}
                Condition:
                  StringEquals:
                    aws:RequestedRegion: !Ref AWS::Region
  WorkerLogGroup:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub "/aws/lambda/${AWS::StackName}-worker"
  WorkerFunction:
    Type: AWS::Lambda::Function
    DependsOn: [WorkerLogGroup]
    Properties:
      Role: !GetAtt WorkerRole.Arn
      Runtime: provided.al2023
      Handler: bootstrap
      Code:
        S3Bucket: !Ref ArtifactBucket
        S3Key: {"Fn::Join": ["", [{Ref: WorkerCodeKey}]]}
      VpcConfig:
        SubnetIds: !Split [",", !ImportValue "datasync-dev:private-subnet-ids"]
      Environment:
        Variables:
          RECORDS_TABLE: !ImportValue datasync-dev-records-table
          NOTE: !Sub "literal ${!NotAVariable} in ${AWS::Region} for ${WorkerRole.Arn}"
          PEER: !ImportValue {"Fn::Sub": "${AWS::StackName}-peer"}
      Tags:
        - Key: encoded
          Value: !Base64 worker
"#;

#[test]
fn realistic_environment_with_imports_and_mixed_intrinsics_has_no_findings() {
    let (network, data) = (vec![], vec!["network".to_string()]);
    let compute = vec!["data".to_string()];
    let findings = check_stacks(&[
        StackTemplate {
            id: "compute",
            depends_on: &compute,
            body: COMPUTE,
        },
        StackTemplate {
            id: "data",
            depends_on: &data,
            body: DATA,
        },
        StackTemplate {
            id: "network",
            depends_on: &network,
            body: NETWORK,
        },
    ]);
    assert_eq!(findings, Vec::<Finding>::new());
}

#[test]
fn invalid_yaml_is_reported_with_its_line() {
    let findings = check_one("Resources:\n  Topic: [\n");
    let finding = only(&findings);
    assert_eq!(finding.rule, "yaml-syntax");
    assert!(finding.location.starts_with("line "), "{finding}");
    assert!(finding.help.contains("fix the YAML syntax"));
}

#[test]
fn misspelled_resources_section_is_reported_with_suggestion() {
    let findings = check_one("Resource:\n  Topic:\n    Type: AWS::SNS::Topic\n");
    let structure = with_rule(&findings, "template-structure");
    assert_eq!(structure.len(), 2, "{findings:#?}");
    assert_eq!(structure[0].location, "Resource");
    assert!(structure[0]
        .message
        .contains("`Resource` is not a template section"));
    assert!(structure[0].help.starts_with("did you mean `Resources`?"));
    assert_eq!(structure[1].location, "Resources");
    assert!(structure[1].help.contains("at least one resource"));
    assert!(only(&check_one("- a list\n"))
        .message
        .contains("not a mapping"));
    let body = "Parameters:\n  Env: {Default: dev}\nResources:\n  Topic:\n    Type: AWS::SNS::Topic\n    Properties: {TopicName: !Ref Env}\nOutputs:\n  Arn:\n    Export: {Name: topic-arn}\n";
    let findings = check_one(body);
    let found: Vec<_> = findings
        .iter()
        .map(|f| (f.rule, f.location.as_str(), f.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "template-structure",
                "Outputs.Arn",
                "output `Arn` has no `Value`"
            ),
            (
                "template-structure",
                "Parameters.Env",
                "parameter `Env` has no `Type`"
            ),
        ]
    );
}

#[test]
fn resource_types_must_be_aws_or_custom() {
    let findings = check_one("Resources:\n  Topic:\n    Type: AWS::SNS\n  Hook:\n    Type: Custom::Seed\n  Bare:\n    Properties: {}\n");
    let types = with_rule(&findings, "resource-type");
    assert_eq!(types.len(), 2, "{findings:#?}");
    assert_eq!(types[0].location, "Resources.Bare.Type");
    assert!(types[0].message.contains("`Bare` has no `Type`"));
    assert_eq!(types[1].location, "Resources.Topic.Type");
    assert!(types[1].message.contains("`AWS::SNS`"));
    assert!(types[1].help.contains("Custom::Name"));
}

#[test]
fn unknown_functions_in_both_forms_suggest_the_real_one() {
    let body = "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n    Properties:\n      TopicName: !Reff Topic\n      DisplayName:\n        Fn::GetAttr: [Topic, TopicName]\n";
    let findings = check_one(body);
    assert_eq!(findings.len(), 2, "{findings:#?}");
    assert_eq!(findings[0].rule, "unknown-function");
    assert_eq!(
        findings[0].location,
        "Resources.Topic.Properties.DisplayName"
    );
    assert!(findings[0].message.contains("`Fn::GetAttr`"));
    assert!(findings[0].help.starts_with("did you mean `Fn::GetAtt`?"));
    assert_eq!(findings[1].location, "Resources.Topic.Properties.TopicName");
    assert!(findings[1].message.contains("`!Reff`"));
    assert!(findings[1].help.starts_with("did you mean `!Ref`?"));
}

const ROLE_AND_FUNCTION: &str = "Parameters:\n  CodeBucket:\n    Type: String\nResources:\n  WorkerRole:\n    Type: AWS::IAM::Role\n  WorkerFunction:\n    Type: AWS::Lambda::Function\n    Properties:\n      Code: {S3Bucket: !Ref CodeBucket}\n";

#[test]
fn ref_to_unknown_name_suggests_the_closest_declared_name() {
    let body = format!("{ROLE_AND_FUNCTION}      Role: !Ref WorkerRoel\n");
    let finding = only(&check_one(&body)).clone();
    assert_eq!(finding.rule, "ref-target");
    assert_eq!(finding.location, "Resources.WorkerFunction.Properties.Role");
    assert!(
        finding.message.contains("Ref names `WorkerRoel`"),
        "{finding}"
    );
    assert!(
        finding.help.starts_with("did you mean `WorkerRole`?"),
        "{finding}"
    );
}

#[test]
fn getatt_must_name_a_resource_in_both_forms() {
    let body = format!("{ROLE_AND_FUNCTION}      Role: !GetAtt WorkRole.Arn\n      Description: {{\"Fn::GetAtt\": [Missing, Arn]}}\n      Handler: !GetAtt CodeBucket.Name\n");
    let findings = check_one(&body);
    let found: Vec<_> = findings
        .iter()
        .map(|f| (f.rule, f.location.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "getatt-target",
                "Resources.WorkerFunction.Properties.Description"
            ),
            (
                "getatt-target",
                "Resources.WorkerFunction.Properties.Handler"
            ),
            ("getatt-target", "Resources.WorkerFunction.Properties.Role"),
        ]
    );
    assert!(findings[0].message.contains("resource `Missing`"));
    assert!(findings[1]
        .message
        .contains("`CodeBucket`, which is a parameter"));
    assert!(findings[1].help.contains("!Ref CodeBucket"));
    assert!(findings[2].help.starts_with("did you mean `WorkerRole`?"));
}

#[test]
fn sub_variables_must_resolve_and_escapes_are_literal() {
    let body = format!("{ROLE_AND_FUNCTION}      Role: !Sub \"${{WorkerRole.Arn}}\"\n      Handler: !Sub [\"${{!Literal}}-${{Local}}-${{WorkerRol}}-${{Missing.Arn}}\", {{Local: x}}]\n");
    let findings = check_one(&body);
    assert_eq!(findings.len(), 2, "{findings:#?}");
    assert!(findings
        .iter()
        .all(|f| f.rule == "sub-variable"
            && f.location == "Resources.WorkerFunction.Properties.Handler"));
    assert!(
        findings[0].message.contains("`${Missing.Arn}`"),
        "{}",
        findings[0]
    );
    assert!(findings[0].help.contains("`${!Missing.Arn}`"));
    assert!(findings[1].message.contains("`${WorkerRol}`"));
    assert!(findings[1].help.starts_with("did you mean `WorkerRole`?"));
}

#[test]
fn depends_on_must_name_resources_in_string_and_list_form() {
    let body = "Resources:\n  Table:\n    Type: AWS::DynamoDB::Table\n  Queue:\n    Type: AWS::SQS::Queue\n    DependsOn: Tabel\n  Topic:\n    Type: AWS::SNS::Topic\n    DependsOn: [Queue, Bucket]\n";
    let findings = check_one(body);
    let found: Vec<_> = findings
        .iter()
        .map(|f| (f.rule, f.location.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("depends-on-target", "Resources.Queue.DependsOn"),
            ("depends-on-target", "Resources.Topic.DependsOn[1]")
        ]
    );
    assert!(findings[0].message.contains("`Tabel`"));
    assert!(findings[0].help.starts_with("did you mean `Table`?"));
    assert!(findings[1].message.contains("`Bucket`"));
    assert!(findings[1].help.contains("remove `Bucket` from DependsOn"));
}

#[test]
fn conditions_named_by_resources_if_and_condition_must_exist() {
    let body = "Conditions:\n  IsProd: !Equals [a, b]\n  Both: !And [!Condition IsProd, {Condition: IsPrd}]\nResources:\n  Topic:\n    Type: AWS::SNS::Topic\n    Condition: IsStaging\n    Properties:\n      TopicName: !If [IsProd2, a, b]\n";
    let findings = check_one(body);
    let found: Vec<_> = findings
        .iter()
        .map(|f| (f.rule, f.location.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("condition-target", "Conditions.Both.Fn::And[1]"),
            ("condition-target", "Resources.Topic.Condition"),
            ("condition-target", "Resources.Topic.Properties.TopicName"),
        ]
    );
    assert!(findings[0].message.contains("`IsPrd`"));
    assert!(findings[0].help.starts_with("did you mean `IsProd`?"));
    assert!(findings[1].message.contains("`IsStaging`"));
    assert!(findings[2].message.contains("`IsProd2`"));
}

#[test]
fn find_in_map_names_existing_mapping_and_keys() {
    let body = "Mappings:\n  Retention:\n    prod: {Days: 35}\nResources:\n  Table:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      A: !FindInMap [Retension, prod, Days]\n      B: !FindInMap [Retention, prod, Dayz]\n      C: !FindInMap [Retention, !Ref AWS::Region, Days]\n";
    let findings = check_one(body);
    assert_eq!(findings.len(), 2, "{findings:#?}");
    assert_eq!(
        (findings[0].rule, findings[0].location.as_str()),
        ("mapping-target", "Resources.Table.Properties.A")
    );
    assert!(findings[0].message.contains("mapping `Retension`"));
    assert!(findings[0].help.starts_with("did you mean `Retention`?"));
    assert!(findings[1]
        .message
        .contains("mapping `Retention` key `prod` has no key `Dayz`"));
    assert!(findings[1].help.starts_with("did you mean `Days`?"));
}

#[test]
fn malformed_intrinsics_are_reported() {
    let body = "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n    Properties:\n      A: !GetAtt Topic\n      B: !If [OnlyTwo, x]\n      C: !Sub [a, b, c]\n";
    let findings = check_one(body);
    assert_eq!(
        with_rule(&findings, "intrinsic-shape").len(),
        3,
        "{findings:#?}"
    );
    assert!(findings[0].message.contains("`Fn::GetAtt`"));
    assert!(findings[0].help.contains("!GetAtt Resource.Attribute"));
    assert!(findings[1].help.contains("!If [ConditionName"));
    assert!(findings[2].help.contains("!Sub"));
}

const EXPORTER: &str = "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\nOutputs:\n  QueueUrl:\n    Value: !Ref Queue\n    Export:\n      Name: datasync-dev-queue-url\n";
const IMPORTER: &str = "Resources:\n  Reader:\n    Type: AWS::SSM::Parameter\n    Properties:\n      Value: !ImportValue datasync-dev-queue-url\n";

#[test]
fn import_exported_by_no_stack_is_reported() {
    let body = IMPORTER.replace("queue-url", "queue-ulr");
    let deps = vec!["queue".to_string()];
    let findings = check_stacks(&[
        StackTemplate {
            id: "queue",
            depends_on: &[],
            body: EXPORTER,
        },
        StackTemplate {
            id: "reader",
            depends_on: &deps,
            body: &body,
        },
    ]);
    let finding = only(&findings);
    assert_eq!(
        (finding.rule, finding.stack.as_str()),
        ("import-unresolved", "reader")
    );
    assert_eq!(finding.location, "Resources.Reader.Properties.Value");
    assert!(finding
        .message
        .contains("`datasync-dev-queue-ulr`, which no stack of this environment exports"));
    assert!(finding
        .help
        .starts_with("did you mean `datasync-dev-queue-url`?"));
}

#[test]
fn import_from_stack_outside_depends_on_names_the_stack_to_add() {
    let findings = check_stacks(&[
        StackTemplate {
            id: "queue",
            depends_on: &[],
            body: EXPORTER,
        },
        StackTemplate {
            id: "reader",
            depends_on: &[],
            body: IMPORTER,
        },
    ]);
    let finding = only(&findings);
    assert_eq!(finding.rule, "import-not-upstream");
    assert!(finding.message.contains(
        "exported by stack `queue` (Outputs.QueueUrl), which stack `reader` does not depend on"
    ));
    assert_eq!(
        finding.help,
        "add `queue` to depends_on of stack `reader` so it is deployed first"
    );
}

#[test]
fn import_of_own_export_is_reported() {
    let other = "\n  Other:\n    Type: AWS::SQS::Queue\n    Properties:\n      RedrivePolicy: !ImportValue datasync-dev-queue-url\nOutputs";
    let body = EXPORTER.replace("\nOutputs", other);
    let finding = only(&check_one(&body)).clone();
    assert_eq!(finding.rule, "import-self", "{finding}");
    assert!(finding
        .message
        .contains("`datasync-dev-queue-url`, which this same stack exports at Outputs.QueueUrl"));
    assert!(finding.help.contains("Ref or Fn::GetAtt"));
}

#[test]
fn duplicate_export_names_across_stacks_are_reported() {
    let findings = check_stacks(&[
        StackTemplate {
            id: "b-queue",
            depends_on: &[],
            body: EXPORTER,
        },
        StackTemplate {
            id: "a-queue",
            depends_on: &[],
            body: EXPORTER,
        },
    ]);
    let finding = only(&findings);
    assert_eq!(
        (finding.rule, finding.stack.as_str()),
        ("export-duplicate", "b-queue")
    );
    assert_eq!(finding.location, "Outputs.QueueUrl.Export.Name");
    assert!(finding
        .message
        .contains("`datasync-dev-queue-url` is also exported by stack `a-queue`"));
    assert!(finding.help.contains("rename one"));
}

#[test]
fn stack_dependency_cycle_is_named() {
    let (a, b, c) = (
        vec!["b".to_string()],
        vec!["c".to_string()],
        vec!["a".to_string()],
    );
    let selfish = vec!["d".to_string()];
    let findings = check_stacks(&[
        StackTemplate {
            id: "c",
            depends_on: &c,
            body: EXPORTER,
        },
        StackTemplate {
            id: "a",
            depends_on: &a,
            body: EXPORTER.replace("url", "a").as_str(),
        },
        StackTemplate {
            id: "b",
            depends_on: &b,
            body: EXPORTER.replace("url", "b").as_str(),
        },
        StackTemplate {
            id: "d",
            depends_on: &selfish,
            body: EXPORTER.replace("url", "d").as_str(),
        },
    ]);
    let cycles: Vec<_> = with_rule(&findings, "stack-cycle")
        .iter()
        .map(|f| (f.stack.as_str(), f.message.as_str()))
        .collect();
    assert_eq!(
        cycles,
        [
            (
                "a",
                "stacks depend on each other in a cycle: a -> b -> c -> a"
            ),
            ("d", "stacks depend on each other in a cycle: d -> d"),
        ]
    );
    assert!(findings[0].help.contains("remove one depends_on entry"));
}

#[test]
fn unknown_stack_dependency_suggests_the_closest_stack() {
    let deps = vec!["queu".to_string()];
    let findings = check_stacks(&[
        StackTemplate {
            id: "queue",
            depends_on: &[],
            body: EXPORTER,
        },
        StackTemplate {
            id: "reader",
            depends_on: &deps,
            body: IMPORTER,
        },
    ]);
    let unknown = with_rule(&findings, "stack-unknown-dependency");
    assert_eq!(unknown.len(), 1, "{findings:#?}");
    assert_eq!(
        (unknown[0].stack.as_str(), unknown[0].location.as_str()),
        ("reader", "depends_on")
    );
    assert!(unknown[0].message.contains("`queu`, which is not a stack"));
    assert!(unknown[0].help.starts_with("did you mean `queue`?"));
}

#[test]
fn resource_dependency_cycle_names_each_edge() {
    let body = "Resources:\n  Role:\n    Type: AWS::IAM::Role\n    DependsOn: Function\n  Function:\n    Type: AWS::Lambda::Function\n    Properties:\n      Role: !GetAtt Role.Arn\n  Group:\n    Type: AWS::EC2::SecurityGroup\n    Properties:\n      Ingress: [{SourceSecurityGroupId: !Ref Group}]\n";
    let findings = check_one(body);
    let found: Vec<_> = findings
        .iter()
        .map(|f| (f.rule, f.location.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("resource-cycle", "Resources.Function"),
            ("resource-cycle", "Resources.Group")
        ]
    );
    assert!(findings[0].message.contains("Function -> Role -> Function (Function -> Role: Fn::GetAtt at Resources.Function.Properties.Role; Role -> Function: DependsOn at Resources.Role.DependsOn)"), "{}", findings[0]);
    assert!(findings[1].message.contains("Group -> Group (Group -> Group: Ref at Resources.Group.Properties.Ingress[0].SourceSecurityGroupId)"));
    assert!(findings[1]
        .help
        .contains("remove a DependsOn or a reference"));
}

#[test]
fn section_counts_over_cloudformation_limits_are_reported() {
    let mut body = String::from("Parameters:\n");
    (0..201).for_each(|i| body.push_str(&format!("  P{i}: {{Type: String}}\n")));
    body.push_str("Mappings:\n");
    (0..201).for_each(|i| body.push_str(&format!("  M{i}: {{a: {{b: c}}}}\n")));
    body.push_str("Resources:\n");
    (0..501).for_each(|i| {
        body.push_str(&format!(
            "  R{i}: {{Type: AWS::SNS::Topic, Properties: {{TopicName: !Ref P{}}}}}\n",
            i % 201
        ))
    });
    body.push_str("Outputs:\n");
    (0..201).for_each(|i| body.push_str(&format!("  O{i}: {{Value: x}}\n")));
    let findings = check_one(&body);
    let limits: Vec<_> = findings
        .iter()
        .filter(|f| f.rule.starts_with("limit-"))
        .map(|f| (f.rule, f.location.as_str(), f.message.as_str()))
        .collect();
    assert_eq!(
        limits,
        [
            (
                "limit-mappings",
                "Mappings",
                "template declares 201 mappings; CloudFormation allows at most 200"
            ),
            (
                "limit-outputs",
                "Outputs",
                "template declares 201 outputs; CloudFormation allows at most 200"
            ),
            (
                "limit-parameters",
                "Parameters",
                "template declares 201 parameters; CloudFormation allows at most 200"
            ),
            (
                "limit-resources",
                "Resources",
                "template declares 501 resources; CloudFormation allows at most 500"
            ),
        ]
    );
    assert_eq!(
        findings.len(),
        4,
        "no other finding expected: {findings:#?}"
    );
}

#[test]
fn template_body_over_inline_limit_says_to_upload_to_s3() {
    let body = format!(
        "Description: {}\nResources:\n  Topic:\n    Type: AWS::SNS::Topic\n",
        "x".repeat(51_200)
    );
    let finding = only(&check_one(&body)).clone();
    assert_eq!(
        (finding.rule, finding.location.as_str()),
        ("limit-template-size", "<template>")
    );
    assert!(finding.message.contains(&format!("{} bytes", body.len())));
    assert!(finding.message.contains("at most 51200 bytes"));
    assert!(finding
        .help
        .contains("upload templates larger than 51200 bytes to S3"));
}

#[test]
fn logical_ids_must_be_alphanumeric_and_short() {
    let long = "L".repeat(256);
    let body = format!("Resources:\n  Records-Table:\n    Type: AWS::DynamoDB::Table\n  {long}:\n    Type: AWS::SNS::Topic\n");
    let findings = check_one(&body);
    let ids = with_rule(&findings, "logical-id");
    assert_eq!(ids.len(), 2, "{findings:#?}");
    assert_eq!(ids[0].location, format!("Resources.{long}"));
    assert!(ids[0]
        .message
        .contains("is 256 characters long; at most 255"));
    assert_eq!(ids[1].location, "Resources.Records-Table");
    assert!(ids[1]
        .message
        .contains("`Records-Table` is not alphanumeric"));
    assert!(ids[1].help.contains("A-Z, a-z and digits 0-9"));
}

#[test]
fn export_names_must_be_short_and_use_allowed_characters() {
    let long = "e".repeat(256);
    let body = format!(
        "{}  Long:\n    Value: x\n    Export: {{Name: {long}}}\n",
        EXPORTER.replace("datasync-dev-queue-url", "datasync_dev/queue")
    );
    let findings = check_one(&body);
    let found: Vec<_> = findings
        .iter()
        .map(|f| (f.rule, f.location.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("export-name", "Outputs.Long.Export.Name"),
            ("export-name", "Outputs.QueueUrl.Export.Name")
        ]
    );
    assert!(findings[0].message.contains("256 characters long"));
    assert!(findings[1]
        .message
        .contains("`datasync_dev/queue` contains characters other than"));
    assert!(findings[1]
        .help
        .contains("letters, digits, colons and hyphens"));
}

#[test]
fn logical_id_shared_between_sections_is_reported() {
    let body = "Parameters:\n  Queue: {Type: String}\nResources:\n  Queue:\n    Type: AWS::SQS::Queue\n    Properties: {QueueName: datasync-dev-records}\nOutputs:\n  Queue:\n    Value: !Ref Queue\n";
    let findings = check_one(body);
    let found: Vec<_> = findings
        .iter()
        .map(|f| (f.location.as_str(), f.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "Outputs.Queue",
                "logical id `Queue` is declared under both Resources and Outputs"
            ),
            (
                "Parameters.Queue",
                "logical id `Queue` is declared under both Resources and Parameters"
            ),
        ]
    );
    assert!(findings
        .iter()
        .all(|f| f.rule == "logical-id-collision" && f.help.contains("rename one")));
}

#[test]
fn unused_parameter_is_a_warning() {
    let body = "Parameters:\n  Used: {Type: String}\n  Unused: {Type: String}\nResources:\n  Topic:\n    Type: AWS::SNS::Topic\n    Properties: {TopicName: !Sub \"${Used}-topic\"}\n";
    let finding = only(&check_one(body)).clone();
    assert_eq!(
        (finding.rule, finding.location.as_str()),
        ("unused-parameter", "Parameters.Unused")
    );
    assert!(finding
        .message
        .contains("parameter `Unused` is declared but never used"));
    assert!(finding.help.contains("remove parameter `Unused`"));
    assert_eq!(finding.severity(), Severity::Warning);
    assert!(finding
        .to_string()
        .starts_with("warning[unused-parameter] stack `app` at Parameters.Unused:"));
}

#[test]
fn findings_are_ordered_by_stack_then_location_and_render_for_people_and_machines() {
    let broken = "Resources:\n  B:\n    Type: AWS::SNS::Topic\n    Properties: {TopicName: !Ref Nope}\n  A:\n    Type: AWS::SNS::Topic\n    DependsOn: Nope\n";
    let findings = check_stacks(&[
        StackTemplate {
            id: "zeta",
            depends_on: &[],
            body: broken,
        },
        StackTemplate {
            id: "alpha",
            depends_on: &[],
            body: broken,
        },
    ]);
    let order: Vec<_> = findings
        .iter()
        .map(|f| (f.stack.as_str(), f.location.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("alpha", "Resources.A.DependsOn"),
            ("alpha", "Resources.B.Properties.TopicName"),
            ("zeta", "Resources.A.DependsOn"),
            ("zeta", "Resources.B.Properties.TopicName"),
        ]
    );
    assert_eq!(findings[1].severity(), Severity::Error);
    assert_eq!(
        findings[1].to_string(),
        "error[ref-target] stack `alpha` at Resources.B.Properties.TopicName: Ref names `Nope`, which is not a parameter, resource or pseudo parameter of this template\n  help: declare `Nope` under Parameters or Resources, or correct the name"
    );
    let json = serde_json::to_value(&findings[0]).unwrap_or_default();
    assert_eq!(json["rule"], "depends-on-target");
    assert_eq!(json["location"], "Resources.A.DependsOn");
    assert_eq!(json["stack"], "alpha");
}

#[test]
fn duplicate_stack_ids_are_reported() {
    let findings = check_stacks(&[
        StackTemplate {
            id: "queue",
            depends_on: &[],
            body: EXPORTER,
        },
        StackTemplate {
            id: "queue",
            depends_on: &[],
            body: &EXPORTER.replace("url", "arn"),
        },
    ]);
    let finding = only(&findings);
    assert_eq!(
        (finding.rule, finding.location.as_str()),
        ("stack-duplicate-id", "id")
    );
    assert!(finding
        .message
        .contains("stack id `queue` is declared more than once"));
    assert!(finding.help.contains("distinct id"));
}

#[test]
fn suggestions_are_only_offered_for_plausible_typos() {
    let body = "Resources:\n  A:\n    Type: AWS::SNS::Topic\n    Properties: {TopicName: !Ref B}\n";
    let finding = only(&check_one(body)).clone();
    assert_eq!(finding.rule, "ref-target");
    assert!(!finding.help.contains("did you mean"), "{finding}");
}
