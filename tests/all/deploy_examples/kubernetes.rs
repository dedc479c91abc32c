//! The Kubernetes manifests, read with a YAML parser: the Deployment's one
//! container, its ports by name or number, and the Service.
use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

/// The one YAML document in the file at `path`, which must be of `kind`.
pub fn load(path: &Path, kind: &str) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut documents = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(documents.len(), 1, "{}: one document expected", path.display());
    let document = documents.remove(0);
    assert_eq!(document["kind"].as_str(), Some(kind), "{}", path.display());
    document
}

/// The pod template's spec.
pub fn pod_spec(deployment: &Yaml) -> &Yaml {
    &deployment["spec"]["template"]["spec"]
}

/// The Deployment's only container.
pub fn container(deployment: &Yaml) -> &Yaml {
    match pod_spec(deployment)["containers"].as_vec().map(Vec::as_slice) {
        Some([container]) => container,
        other => panic!("expected one container, found {other:?}"),
    }
}

/// The container's `command` followed by its `args`: the host's command line.
pub fn command_line(container: &Yaml) -> Vec<String> {
    let words = |key: &str| -> Vec<String> {
        let list = container[key].as_vec().unwrap_or_else(|| panic!("the container has no {key} list"));
        list.iter().map(|w| w.as_str().unwrap_or_else(|| panic!("{key}: {w:?} is not a string")).to_string()).collect()
    };
    [words("command"), words("args")].concat()
}

/// The number of a port given by number or by the name of one of the
/// container's ports, as Kubernetes resolves probe ports and `targetPort`.
pub fn resolve_port(container: &Yaml, port: &Yaml) -> i64 {
    if let Some(number) = port.as_i64() {
        return number;
    }
    let name = port.as_str().unwrap_or_else(|| panic!("a port must be a number or a name, not {port:?}"));
    let ports = container["ports"].as_vec().expect("the container lists its ports");
    let named = ports.iter().find(|p| p["name"].as_str() == Some(name));
    named.and_then(|p| p["containerPort"].as_i64()).unwrap_or_else(|| panic!("no container port named {name}"))
}
