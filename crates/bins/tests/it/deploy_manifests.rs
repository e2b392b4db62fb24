//! Every manifest in deploy/ runs the Job image as it is built: the image `cargo xtask image`
//! names, a command whose program is one of this crate's binaries and whose subcommand and flag names
//! it takes, a non-root user with a read-only root filesystem, resources, a sized /tmp, and
//! Secrets only as mounted files. `cargo xtask image --smoke` runs the same commands inside the
//! image; its reader takes one-line `command:` sequences, which this test also holds them to.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const IMAGE: &str = concat!("dbkit/jobs:", env!("CARGO_PKG_VERSION"));
const BINARIES: &[&str] = &["datastores", "pg-migrate", "recommend-db", "pg-backup", "mongo-backup", "vector-admin"];

fn manifests() -> Vec<(PathBuf, String, Vec<Value>)> {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&deploy)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let docs = serde_norway::Deserializer::from_str(&text)
                .map(|d| {
                    serde_json::to_value(<serde_norway::Value as serde::Deserialize>::deserialize(d).unwrap()).unwrap()
                })
                .collect();
            (path, text, docs)
        })
        .collect()
}

/// The pod specs of a document, with the names of the objects that hold them.
fn pods(doc: &Value) -> Vec<(String, &Value)> {
    let name = format!("{} {}", doc["kind"].as_str().unwrap_or("?"), doc["metadata"]["name"].as_str().unwrap_or("?"));
    let pod = match doc["kind"].as_str() {
        Some("CronJob") => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        Some("Job" | "Deployment" | "StatefulSet" | "DaemonSet") => &doc["spec"]["template"]["spec"],
        Some("Pod") => &doc["spec"],
        _ => return Vec::new(),
    };
    vec![(name, pod)]
}

fn strings(value: &Value) -> Vec<&str> {
    value.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

#[test]
fn every_container_runs_the_job_image_as_built() {
    let mut containers = 0;
    for (path, text, docs) in manifests() {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut in_file = 0;
        for (object, pod) in docs.iter().flat_map(pods) {
            let at = format!("{file}: {object}");
            let security = &pod["securityContext"];
            assert_eq!(security["runAsNonRoot"], true, "{at}");
            assert_eq!(security["runAsUser"], 65532, "{at}: the image's user");
            assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault", "{at}");
            let volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
            let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).cloned();
            let all: Vec<&Value> = items(&pod["initContainers"]).into_iter().chain(items(&pod["containers"])).collect();
            assert!(!all.is_empty(), "{at}: no containers");
            // A pod gets the keys of a Secret it reads, not the whole Secret: db-credentials holds
            // every datastore's password. Each listed key of a required volume is read through a
            // *_FILE variable (an optional one, like Slack's, is named in the ConfigMap when wanted).
            for v in &volumes {
                assert!(v["projected"].is_null(), "{at}: volume {}: projected volumes are not checked here", v["name"]);
                let secret = &v["secret"];
                if secret.is_null() {
                    continue;
                }
                let listed = secret["items"]
                    .as_array()
                    .filter(|items| !items.is_empty())
                    .unwrap_or_else(|| panic!("{at}: volume {} mounts the whole Secret", v["name"]));
                if secret["optional"] == true {
                    continue;
                }
                for item in listed {
                    let read = all.iter().any(|c| {
                        let mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
                        mounts.iter().filter(|m| m["name"] == v["name"]).any(|m| {
                            let file =
                                format!("{}/{}", m["mountPath"].as_str().unwrap(), item["path"].as_str().unwrap());
                            c["env"].as_array().cloned().unwrap_or_default().iter().any(|e| {
                                e["name"].as_str().unwrap().ends_with("_FILE")
                                    && e["value"].as_str() == Some(file.as_str())
                            })
                        })
                    });
                    assert!(read, "{at}: volume {} mounts {} that no *_FILE reads", v["name"], item["key"]);
                }
            }
            for container in all {
                in_file += 1;
                let at = format!("{at} container {}", container["name"]);
                assert_eq!(container["image"], IMAGE, "{at}");
                assert!(
                    container["args"].is_null(),
                    "{at}: the arguments belong in command (the image has no entrypoint)"
                );
                let command = strings(&container["command"]);
                assert!(BINARIES.contains(&command.first().copied().unwrap_or("")), "{at}: {command:?}");
                // The subcommand and flag names are the binary's (values are read when it runs): with
                // --help appended it prints its usage.
                let help = Command::new(assert_cmd::cargo::cargo_bin(command[0]))
                    .args(&command[1..])
                    .arg("--help")
                    .output()
                    .unwrap();
                assert!(
                    help.status.success() && String::from_utf8_lossy(&help.stdout).contains("Usage:"),
                    "{at}: {command:?} --help: {}",
                    String::from_utf8_lossy(&help.stderr)
                );

                let security = &container["securityContext"];
                assert_eq!(security["readOnlyRootFilesystem"], true, "{at}");
                assert_eq!(security["allowPrivilegeEscalation"], false, "{at}");
                assert!(strings(&security["capabilities"]["drop"]).contains(&"ALL"), "{at}");
                for kind in ["requests", "limits"] {
                    for resource in ["cpu", "memory", "ephemeral-storage"] {
                        assert!(
                            container["resources"][kind][resource].is_string(),
                            "{at}: resources.{kind}.{resource}"
                        );
                    }
                }

                let mounts = container["volumeMounts"].as_array().cloned().unwrap_or_default();
                let tmp = mounts
                    .iter()
                    .find(|m| m["mountPath"] == "/tmp")
                    .unwrap_or_else(|| panic!("{at}: /tmp is not mounted"));
                let tmp = volume(tmp["name"].as_str().unwrap()).unwrap();
                assert!(tmp["emptyDir"]["sizeLimit"].is_string(), "{at}: /tmp is an emptyDir with a size: {tmp}");

                // Secrets only as files: no secretKeyRef, no literal that looks like one, and
                // every *_FILE inside a mounted Secret.
                for env in container["env"].as_array().cloned().unwrap_or_default() {
                    let name = env["name"].as_str().unwrap();
                    assert!(env["valueFrom"]["secretKeyRef"].is_null(), "{at}: {name} from a Secret as a variable");
                    if let Some(file) = name.strip_suffix("_FILE").and(env["value"].as_str()) {
                        let mount = mounts
                            .iter()
                            .filter(|m| file.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap())))
                            .max_by_key(|m| m["mountPath"].as_str().unwrap().len())
                            .unwrap_or_else(|| panic!("{at}: {name}={file} is in no mounted volume"));
                        let source = volume(mount["name"].as_str().unwrap()).unwrap();
                        assert!(!source["secret"].is_null(), "{at}: {name} not from a Secret");
                        assert_eq!(mount["readOnly"], true, "{at}: {name}");
                        // A Secret volume that lists its items holds those files only.
                        if let Some(items) = source["secret"]["items"].as_array() {
                            let relative = &file[mount["mountPath"].as_str().unwrap().len() + 1..];
                            assert!(
                                items.iter().any(|i| i["path"] == relative),
                                "{at}: {name}={file} is not among {items:?}"
                            );
                        }
                    } else {
                        let secretish =
                            ["PASSWORD", "SECRET", "TOKEN", "API_KEY", "WEBHOOK"].iter().any(|s| name.contains(s));
                        assert!(!secretish, "{at}: {name} is given as a value");
                    }
                }
                for source in container["envFrom"].as_array().cloned().unwrap_or_default() {
                    assert!(source["secretRef"].is_null(), "{at}: a Secret as variables");
                }
            }
        }
        // The image check in `cargo xtask image --smoke` reads `command:` lines without a YAML
        // parser: each container has exactly one, written as a one-line sequence.
        let lines: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with("command:")).collect();
        assert_eq!(lines.len(), in_file, "{file}: one command: line per container");
        for line in lines {
            let value = line.trim_start().trim_start_matches("command:").trim();
            assert!(value.starts_with("[\"") && value.ends_with("\"]") && !value.contains('\\'), "{file}: {line}");
        }
        containers += in_file;
    }
    assert!(containers >= 15, "{containers} containers");
}

#[test]
fn the_kustomization_applies_every_manifest_with_the_image_from_a_registry() {
    let all = manifests();
    let (_, _, docs) = all.iter().find(|(path, _, _)| path.ends_with("kustomization.yaml")).unwrap();
    let kustomization = &docs[0];
    let mut listed: Vec<&str> = strings(&kustomization["resources"]);
    listed.sort();
    let files: Vec<String> = all
        .iter()
        .map(|(path, _, _)| path.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|name| name != "kustomization.yaml")
        .collect();
    assert_eq!(listed, files);
    let image = &kustomization["images"][0];
    assert_eq!(Some(image["name"].as_str().unwrap()), IMAGE.split(':').next());
    assert_eq!(Some(image["newTag"].as_str().unwrap()), IMAGE.split(':').nth(1));
    assert!(image["newName"].as_str().unwrap().ends_with("/dbkit/jobs"), "{image}");
}

fn items(value: &Value) -> Vec<&Value> {
    value.as_array().map(|a| a.iter().collect()).unwrap_or_default()
}
