use super::*;
use portcullis_core::Config;

const PETS: &str = r##"
openapi: 3.0.3
info: { title: Pets, version: "1" }
servers:
  - url: https://{region}.pets.example/v1
    variables: { region: { default: eu } }
security:
  - bearer: [pets:read]
components:
  securitySchemes:
    bearer: { type: http, scheme: bearer }
    key: { type: apiKey, in: header, name: X-Pet-Key }
    basic: { type: http, scheme: basic }
  parameters:
    Limit:
      name: limit
      in: query
      schema: { type: integer, minimum: 1, maximum: 100, exclusiveMaximum: true }
  schemas:
    Pet:
      type: object
      required: [name]
      description: a pet
      properties:
        name: { type: string, maxLength: 40, example: Rex }
        tag: { type: string, nullable: true }
        kind: { type: string, enum: [cat, dog, null], nullable: true }
        parent: { $ref: "#/components/schemas/Pet" }
paths:
  /pets:
    get:
      operationId: listPets
      parameters:
        - $ref: "#/components/parameters/Limit"
        - { name: sort, in: query, schema: { type: string, enum: [name, age] } }
        - { name: X-Trace, in: header, required: true, schema: { type: string, pattern: "^[a-f0-9]+$" } }
        - { name: session, in: cookie, schema: { type: string } }
        - { name: ids, in: query, schema: { type: array, items: { type: integer } } }
      responses: { "200": { description: ok } }
    post:
      operationId: createPet
      security: [{ key: [] }]
      requestBody:
        required: true
        content:
          application/json:
            schema: { $ref: "#/components/schemas/Pet" }
      responses: { 201: { description: created } }
  /pets/{petId}:
    parameters:
      - { name: petId, in: path, required: true, schema: { type: string, format: uuid } }
    get:
      operationId: showPet
      security: [{}]
      responses: { "200": { description: ok } }
    delete:
      security: [{ basic: [] }]
      responses: { "204": { description: gone } }
"##;

fn imported(src: &str) -> (Import, serde_json::Value) {
    let out = import(src, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    Config::from_toml(&out.toml).unwrap_or_else(|e| panic!("{}", e.render("import")));
    let value: toml::Value = toml::from_str(&out.toml).unwrap();
    let json = serde_json::to_value(value).unwrap();
    (out, json)
}

fn route<'a>(config: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let routes = config["routes"].as_array().unwrap();
    routes
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no route {name}"))
}

#[test]
fn a_3_0_document_becomes_a_route_per_operation_with_its_checks() {
    let (out, config) = imported(PETS);
    assert_eq!(
        (out.routes, out.operations, out.version),
        (4, 4, Version::V3_0)
    );
    assert_eq!(
        config["upstreams"]["api"]["targets"][0]["url"],
        "https://eu.pets.example/v1"
    );
    let list = route(&config, "listPets");
    assert_eq!(list["methods"], serde_json::json!(["GET"]));
    assert_eq!(list["path"], "/pets");
    assert_eq!(
        list["auth"],
        serde_json::json!({"jwt": "bearer", "scopes": ["pets:read"]})
    );
    let v = &list["validate"];
    // an exclusive maximum of an integer is the integer below it
    assert_eq!(
        v["query"]["limit"],
        serde_json::json!({"type": "int", "min": 1.0, "max": 99.0})
    );
    assert_eq!(
        v["query"]["sort"],
        serde_json::json!({"type": "string", "enum": ["name", "age"]})
    );
    assert_eq!(v["query"]["ids"], "string");
    assert_eq!(
        v["headers"]["x-trace"],
        serde_json::json!({"type": "string", "required": true, "pattern": "^[a-f0-9]+$"})
    );
    let create = route(&config, "createPet");
    assert_eq!(create["auth"], serde_json::json!({"api_key": "key"}));
    let body = &create["validate"]["body_schema"];
    assert_eq!(body["$ref"], "#/$defs/Pet");
    let pet = &body["$defs"]["Pet"];
    assert_eq!(pet.get("description"), None, "annotations are dropped");
    assert_eq!(
        pet["properties"]["parent"]["$ref"], "#/$defs/Pet",
        "recursion kept finite"
    );
    assert_eq!(
        pet["properties"]["tag"]["type"],
        serde_json::json!(["string", "null"])
    );
    assert_eq!(
        pet["properties"]["kind"],
        serde_json::json!({"anyOf": [{"type": "string", "enum": ["cat", "dog"]}, {"type": "null"}]})
    );
    assert_eq!(
        create["validate"]["content_types"],
        serde_json::json!(["application/json"])
    );
    let show = route(&config, "showPet");
    assert_eq!(show["path"], "/pets/{petId}");
    assert_eq!(
        show["validate"]["path"]["petId"],
        serde_json::json!({"type": "uuid", "required": true})
    );
    assert_eq!(show.get("auth"), None, "optional security");
    let delete = route(&config, "delete-pets-petId");
    assert_eq!(delete.get("auth"), None);
    // what did not map is said, at its place
    let said: Vec<String> = out.notes.iter().map(ToString::to_string).collect();
    for expected in [
        "#/components/securitySchemes/basic: security scheme `basic` (http basic) has no counterpart",
        "#/paths/~1pets/get/parameters/3: cookie parameter `session`: not checked",
        "#/paths/~1pets/get/parameters/4: parameter `ids` is an array: its items are not checked",
        "#/paths/~1pets~1{petId}/delete/security: no alternative of its security maps",
    ] {
        assert!(said.iter().any(|s| s.starts_with(expected)), "{expected}\n{said:#?}");
    }
    for note in &said {
        assert!(
            out.toml.contains(&format!("#   {note}")),
            "{note} in the comments"
        );
    }
}

#[test]
fn documents_that_are_not_openapi_3_are_refused_with_the_reason() {
    for (src, pointer, says) in [
        (
            "swagger: '2.0'\ninfo: {title: t, version: '1'}\npaths: {}",
            "/swagger",
            "convert it to OpenAPI 3",
        ),
        (
            "openapi: 2.5.0\npaths: {}",
            "/openapi",
            "3.0.x and 3.1.x are",
        ),
        ("info: {title: t}", "/openapi", "not an OpenAPI 3 document"),
        (
            "openapi: 3.0.0\npaths: [1]",
            "/paths",
            "`paths` is not an object",
        ),
        ("{\"openapi\": \"3.1.0\",", "", "line 1 column"),
        ("openapi: [3.1\n", "", "not YAML"),
        ("- 1\n- 2", "", "an OpenAPI document is an object"),
    ] {
        let refused = import(src, &Options::default()).unwrap_err();
        let first = &refused.problems[0];
        assert_eq!(first.pointer, pointer, "{src}");
        assert!(first.message.contains(says), "{src}: {}", first.message);
    }
}

#[test]
fn a_departure_from_the_object_model_is_listed_and_the_rest_imported() {
    let src = "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get: 7\n  /b:\n    get: {responses: {}}";
    let out = import(src, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let first = &out.notes[0];
    assert_eq!(first.pointer, "/paths/~1a/get");
    assert!(
        first.message.starts_with("not valid OpenAPI 3.0"),
        "{}",
        first.message
    );
    assert!(
        out.notes.iter().any(|n| n.pointer == "/paths/~1a/get"),
        "{:#?}",
        out.notes
    );
    assert_eq!((out.routes, out.operations), (1, 2));
}

#[test]
fn every_part_that_departs_from_the_object_model_is_listed_at_its_place() {
    let src = r#"
openapi: 3.1.0
info: {title: t, version: '1'}
components:
  schemas:
    Good: {type: string}
    Bad: {type: 7}
  parameters:
    P: {name: p, in: nowhere}
paths:
  /a:
    get: {responses: {'200': {description: ok}}, parameters: [{name: q, in: query, required: maybe}]}
  /b:
    post: {responses: {'200': {description: ok}}, requestBody: {content: 5}}
"#;
    let out = import(src, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let places: Vec<&str> = (out.notes.iter())
        .filter(|n| n.message.starts_with("not valid OpenAPI 3.1"))
        .map(|n| n.pointer.as_str())
        .collect();
    assert_eq!(places.len(), 4, "{:#?}", out.notes);
    for prefix in [
        "/paths/~1a/get",
        "/paths/~1b/post",
        "/components/schemas/Bad",
        "/components/parameters/P",
    ] {
        assert!(
            places.iter().any(|p| p.starts_with(prefix)),
            "{prefix}: {places:?}"
        );
    }
}

#[test]
fn a_3_1_document_keeps_its_json_schema_and_an_upstream_can_be_given() {
    let src = r#"{
      "openapi": "3.1.0",
      "info": {"title": "Notes", "version": "1"},
      "servers": [{"url": "/relative"}],
      "paths": {
        "/notes/{id}": {
          "put": {
            "operationId": "putNote",
            "parameters": [
              {"name": "id", "in": "path", "required": true,
               "schema": {"type": "integer", "exclusiveMinimum": 0}}
            ],
            "requestBody": {"content": {"application/merge-patch+json": {"schema":
              {"type": ["object", "null"], "properties": {"text": {"type": "string", "const": null}}}}}},
            "responses": {"200": {"description": "ok"}}
          }
        },
        "/files/{name}.txt": {"get": {"operationId": "getFile", "responses": {"200": {"description": "ok"}}}},
        "/files/{other}.txt": {"get": {"operationId": "getOther", "responses": {"200": {"description": "ok"}}}}
      }
    }"#;
    let options = Options {
        upstream: Some("http://127.0.0.1:8080/".into()),
    };
    let out = import(src, &options).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.version, Version::V3_1);
    Config::from_toml(&out.toml).unwrap_or_else(|e| panic!("{}", e.render("import")));
    assert!(
        out.toml.contains("url = \"http://127.0.0.1:8080\""),
        "{}",
        out.toml
    );
    assert!(
        out.toml.contains("type = [\"object\", \"null\"]"),
        "{}",
        out.toml
    );
    assert!(out.toml.contains("min = 1.0"), "{}", out.toml);
    // the two file routes match the same requests: one is left out, and said so
    let left_out = out
        .notes
        .iter()
        .filter(|n| n.message.contains("cannot express"))
        .count();
    assert!(left_out >= 1, "{:#?}", out.notes);
    assert_eq!(out.routes + left_out, out.operations);
}
