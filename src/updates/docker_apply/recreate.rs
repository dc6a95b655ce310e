//! The create request for the new container: the old container's
//! configuration with the new image.
//!
//! # What is kept and what comes from the new image
//!
//! A container's inspected configuration mixes what its user set (`docker
//! run -e`, `--entrypoint`, compose files) with what it inherited from its
//! image (`ENV`, `CMD`, `LABEL`, `HEALTHCHECK`...). Copying it all would pin
//! the old image's defaults onto the new image (its old `APP_VERSION`, its
//! old command), so the rule is: **a value equal to the old image's own
//! value came from the image and is left out, so the new image supplies
//! its own; any other value was set by the user and is kept.**
//!
//! - `Env`: entries (`KEY=value`) found verbatim in the old image's `Env`
//!   are left out; the rest are kept, in order.
//! - `Labels`, `ExposedPorts`, `Volumes`: the same, by key and value.
//! - `Entrypoint`: kept when it differs from the old image's. An empty
//!   entrypoint where the old image had one means the user reset it
//!   (`--entrypoint ""`), which is kept as `[""]`.
//! - `Cmd`: kept when it differs from the old image's; ALSO kept verbatim
//!   whenever the entrypoint is kept, because Docker does not give a
//!   container with a user entrypoint the image's `CMD`: the user's
//!   command goes with the user's entrypoint.
//! - `Healthcheck`: field by field (test, interval, timeout, retries, start
//!   period, start interval), as Docker itself merges them, so
//!   `--health-interval` alone keeps the new image's test.
//! - `User`, `WorkingDir`, `StopSignal`, `Shell`, `OnBuild`: kept when they
//!   differ from the old image's.
//! - `Hostname`: left out when it is Docker's default (the first 12 hex
//!   digits of the old id) or when the network mode forbids one (`host`,
//!   `container:`); kept otherwise. `Domainname`, `StopTimeout`, TTY and
//!   stdin settings are kept.
//! - `HostConfig` (binds, mounts, ports, restart policy, resources,
//!   capabilities, devices, log config, DNS, ...) is the user's by
//!   definition (images have none) and is kept whole, with two changes:
//!   legacy links written back as `name:alias`, and volumes the old
//!   container got without naming them (anonymous volumes from `VOLUME` or
//!   `-v /path`) added as `volume-name:/path` binds, so the new container
//!   sees the same data instead of a new empty volume.
//! - Networks: every network the old container was on, with its aliases
//!   (minus the old short id Docker adds by itself), static IPs (IPAM
//!   config), links and driver options. The first goes in the create
//!   request, the others are connected before the start (Engines before API
//!   1.44 take one network at create). MAC addresses are not copied: Docker
//!   derives them.
//!
//! When the old image cannot be inspected (deleted, say), nothing can be
//! told apart and everything is kept as it was.
//!
//! A value the user set equal to the old image's own value is left out too,
//! and so takes the new image's value: there is no way to tell them apart
//! from the inspected configuration.

use std::collections::{HashMap, HashSet};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HealthConfig, HostConfig,
    ImageConfig, NetworkingConfig, RestartPolicy, RestartPolicyNameEnum,
};

/// What to create and connect.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// The create request (one network at most in `networking_config`).
    pub body: ContainerCreateBody,
    /// Further networks to connect before the start, by name.
    pub extra_networks: Vec<(String, EndpointSettings)>,
    /// What was kept from the user and what was left to the new image, in
    /// words, for the `container_recreated` event.
    pub notes: Vec<String>,
}

/// `Some(v)` unless `v` is empty.
fn non_empty<T>(v: Option<&Vec<T>>) -> Option<&Vec<T>> {
    v.filter(|v| !v.is_empty())
}

fn non_empty_str(v: Option<&String>) -> Option<&String> {
    v.filter(|v| !v.is_empty())
}

/// Entries of `container` not found in `image`; `None` when none are left.
fn user_entries(
    container: Option<&Vec<String>>,
    image: Option<&Vec<String>>,
) -> Option<Vec<String>> {
    let image: HashSet<&String> = image.into_iter().flatten().collect();
    let kept: Vec<String> = container
        .into_iter()
        .flatten()
        .filter(|e| !image.contains(e))
        .cloned()
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// `Some(c)` when `c` is set and differs from `i`.
fn user_value<T: PartialEq + Clone>(c: Option<&T>, i: Option<&T>) -> Option<T> {
    match c {
        Some(c) if Some(c) != i => Some(c.clone()),
        _ => None,
    }
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// The healthcheck fields the user set (see the module documentation).
fn user_healthcheck(c: Option<&HealthConfig>, i: Option<&HealthConfig>) -> Option<HealthConfig> {
    let c = c?;
    let empty = HealthConfig::default();
    let i = i.unwrap_or(&empty);
    let hc = HealthConfig {
        test: user_value(non_empty(c.test.as_ref()), non_empty(i.test.as_ref())),
        interval: user_value(c.interval.as_ref(), i.interval.as_ref()),
        timeout: user_value(c.timeout.as_ref(), i.timeout.as_ref()),
        retries: user_value(c.retries.as_ref(), i.retries.as_ref()),
        start_period: user_value(c.start_period.as_ref(), i.start_period.as_ref()),
        start_interval: user_value(c.start_interval.as_ref(), i.start_interval.as_ref()),
    };
    (hc != empty).then_some(hc)
}

/// `/db:/web/db` (as inspect shows legacy links) → `db:db` (as create
/// takes them); anything else unchanged.
fn create_link(link: &str) -> String {
    match link.split_once(':') {
        Some((name, alias)) if name.starts_with('/') => {
            let alias = alias.rsplit('/').next().unwrap_or(alias);
            format!("{}:{alias}", name.trim_start_matches('/'))
        }
        _ => link.to_string(),
    }
}

/// The container path of a `-v` bind (`src:dst[:opts]`), if it has one.
fn bind_destination(bind: &str) -> Option<&str> {
    let mut parts = bind.split(':');
    let first = parts.next()?;
    Some(parts.next().unwrap_or(first))
}

/// The endpoint settings a create or connect takes, from inspected ones.
fn endpoint_for_create(network: &str, s: &EndpointSettings, old_id: &str) -> EndpointSettings {
    let short_id: String = old_id.chars().take(12).collect();
    // The default bridge network takes no aliases (Docker refuses them).
    let aliases = if network == "bridge" {
        None
    } else {
        let kept: Vec<String> = s
            .aliases
            .iter()
            .flatten()
            .filter(|a| **a != short_id && **a != old_id)
            .cloned()
            .collect();
        (!kept.is_empty()).then_some(kept)
    };
    let ipam_config = s.ipam_config.clone().filter(|c| {
        non_empty_str(c.ipv4_address.as_ref()).is_some()
            || non_empty_str(c.ipv6_address.as_ref()).is_some()
            || non_empty(c.link_local_ips.as_ref()).is_some()
    });
    EndpointSettings {
        ipam_config,
        links: non_empty(s.links.as_ref()).map(|l| l.iter().map(|x| create_link(x)).collect()),
        aliases,
        driver_opts: s.driver_opts.clone().filter(|o| !o.is_empty()),
        ..EndpointSettings::default()
    }
}

/// The networks part: what goes in the create request, what is connected
/// afterwards, and the network mode to create with.
fn networks(
    old: &ContainerInspectResponse,
    old_id: &str,
    mode: &str,
) -> (Option<NetworkingConfig>, Vec<(String, EndpointSettings)>) {
    if mode == "host" || mode == "none" || mode.starts_with("container:") {
        return (None, Vec::new());
    }
    let empty = HashMap::new();
    let all = old
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .unwrap_or(&empty);
    let primary_name = if mode == "default" || mode.is_empty() {
        "bridge"
    } else {
        mode
    };
    // The mode may name the network by id (or an id prefix).
    let primary = all.get_key_value(primary_name).or_else(|| {
        all.iter().find(|(_, s)| {
            s.network_id
                .as_deref()
                .is_some_and(|id| !primary_name.is_empty() && id.starts_with(primary_name))
        })
    });
    let mut names: Vec<&String> = all.keys().collect();
    names.sort();
    let extra = names
        .into_iter()
        .filter(|n| primary.is_none_or(|(p, _)| p != *n))
        .filter_map(|n| {
            all.get(n)
                .map(|s| (n.clone(), endpoint_for_create(n, s, old_id)))
        })
        .collect();
    let create = primary.map(|(name, s)| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            name.clone(),
            endpoint_for_create(name, s, old_id),
        )])),
    });
    (create, extra)
}

/// `no`, `always`, `unless-stopped`, `on-failure:3`, as `docker run
/// --restart` takes it.
pub(crate) fn restart_policy_words(policy: &RestartPolicy) -> String {
    match (&policy.name, policy.maximum_retry_count) {
        (Some(RestartPolicyNameEnum::ON_FAILURE), Some(n)) if n > 0 => format!("on-failure:{n}"),
        (Some(RestartPolicyNameEnum::EMPTY) | None, _) => "no".to_string(),
        (Some(p), _) => p.to_string(),
    }
}

/// Builds the create request for `new_image` from the old container and
/// the old image's configuration (see the module documentation).
pub(crate) fn plan(
    old: &ContainerInspectResponse,
    old_image: Option<&ImageConfig>,
    new_image: &str,
) -> Plan {
    let old_id = old.id.clone().unwrap_or_default();
    let config = old.config.clone().unwrap_or_default();
    let mut notes = Vec::new();
    let mut host_config: HostConfig = old.host_config.clone().unwrap_or_default();
    let mode = host_config
        .network_mode
        .clone()
        .unwrap_or_else(|| "default".to_string());

    let body_config = match old_image {
        None => {
            notes
                .push("old image could not be inspected: every setting kept as it was".to_string());
            ContainerCreateBody {
                hostname: config.hostname.clone(),
                domainname: config.domainname.clone(),
                user: config.user.clone(),
                exposed_ports: config.exposed_ports.clone(),
                env: config.env.clone(),
                cmd: config.cmd.clone(),
                healthcheck: config.healthcheck.clone(),
                volumes: config.volumes.clone(),
                working_dir: config.working_dir.clone(),
                entrypoint: config.entrypoint.clone(),
                labels: config.labels.clone(),
                stop_signal: config.stop_signal.clone(),
                shell: config.shell.clone(),
                on_build: config.on_build.clone(),
                ..ContainerCreateBody::default()
            }
        }
        Some(image) => {
            let env = user_entries(config.env.as_ref(), image.env.as_ref());
            let user_keys: Vec<&str> = env.iter().flatten().map(|e| env_key(e)).collect();
            let image_keys: Vec<&str> = config
                .env
                .iter()
                .flatten()
                .filter(|e| env.as_ref().is_none_or(|kept| !kept.contains(e)))
                .map(|e| env_key(e))
                .collect();
            if !user_keys.is_empty() {
                notes.push(format!("env kept: {}", user_keys.join(", ")));
            }
            if !image_keys.is_empty() {
                notes.push(format!(
                    "env from the old image, now the new image's: {}",
                    image_keys.join(", ")
                ));
            }

            let image_labels = image.labels.clone().unwrap_or_default();
            let labels: HashMap<String, String> = config
                .labels
                .iter()
                .flatten()
                .filter(|(k, v)| image_labels.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !labels.is_empty() {
                let mut keys: Vec<&String> = labels.keys().collect();
                keys.sort();
                let keys: Vec<&str> = keys.into_iter().map(String::as_str).collect();
                notes.push(format!("labels kept: {}", keys.join(", ")));
            }

            let c_entrypoint = non_empty(config.entrypoint.as_ref());
            let i_entrypoint = non_empty(image.entrypoint.as_ref());
            let entrypoint = match (c_entrypoint, i_entrypoint) {
                (Some(c), Some(i)) if c == i => None,
                (Some(c), _) => Some(c.clone()),
                (None, Some(_)) => Some(vec![String::new()]),
                (None, None) => None,
            };
            let cmd = if entrypoint.is_some() {
                non_empty(config.cmd.as_ref()).cloned()
            } else {
                user_value(
                    non_empty(config.cmd.as_ref()),
                    non_empty(image.cmd.as_ref()),
                )
            };
            notes.push(match (&entrypoint, &cmd) {
                (None, None) => "entrypoint and command: the new image's".to_string(),
                (None, Some(c)) => {
                    format!("command kept: {}; entrypoint: the new image's", c.join(" "))
                }
                (Some(e), c) => format!(
                    "entrypoint kept: {:?}; command kept: {}",
                    e.join(" "),
                    c.as_ref().map_or("none".to_string(), |c| c.join(" "))
                ),
            });

            let healthcheck =
                user_healthcheck(config.healthcheck.as_ref(), image.healthcheck.as_ref());
            notes.push(if healthcheck.is_some() {
                "healthcheck settings kept from the user".to_string()
            } else {
                "healthcheck: the new image's".to_string()
            });

            let hostname = non_empty_str(config.hostname.as_ref())
                .filter(|h| !old_id.starts_with(h.as_str()))
                .cloned();
            ContainerCreateBody {
                hostname,
                domainname: non_empty_str(config.domainname.as_ref()).cloned(),
                user: user_value(
                    non_empty_str(config.user.as_ref()),
                    non_empty_str(image.user.as_ref()),
                ),
                exposed_ports: user_entries(
                    config.exposed_ports.as_ref(),
                    image.exposed_ports.as_ref(),
                ),
                env,
                cmd,
                healthcheck,
                volumes: user_entries(config.volumes.as_ref(), image.volumes.as_ref()),
                working_dir: user_value(
                    non_empty_str(config.working_dir.as_ref()),
                    non_empty_str(image.working_dir.as_ref()),
                ),
                entrypoint,
                labels: (!labels.is_empty()).then_some(labels),
                stop_signal: user_value(
                    non_empty_str(config.stop_signal.as_ref()),
                    non_empty_str(image.stop_signal.as_ref()),
                ),
                shell: user_value(
                    non_empty(config.shell.as_ref()),
                    non_empty(image.shell.as_ref()),
                ),
                on_build: user_value(
                    non_empty(config.on_build.as_ref()),
                    non_empty(image.on_build.as_ref()),
                ),
                ..ContainerCreateBody::default()
            }
        }
    };

    // Host config: the user's, with links in create form and anonymous
    // volumes carried over by name.
    if let Some(links) = host_config.links.as_mut() {
        *links = links.iter().map(|l| create_link(l)).collect();
    }
    let mut covered: HashSet<String> = host_config
        .binds
        .iter()
        .flatten()
        .filter_map(|b| bind_destination(b))
        .map(str::to_string)
        .collect();
    covered.extend(
        host_config
            .mounts
            .iter()
            .flatten()
            .filter_map(|m| m.target.clone()),
    );
    let mut carried = Vec::new();
    for m in old.mounts.iter().flatten() {
        if m.typ.as_deref() != Some("volume") {
            continue;
        }
        let (Some(name), Some(dest)) = (m.name.as_deref(), m.destination.as_deref()) else {
            continue;
        };
        if name.is_empty() || covered.contains(dest) {
            continue;
        }
        let ro = if m.rw == Some(false) { ":ro" } else { "" };
        carried.push(format!("{name}:{dest}{ro}"));
        covered.insert(dest.to_string());
    }
    if !carried.is_empty() {
        notes.push(format!(
            "unnamed volumes carried over by name: {}",
            carried.join(", ")
        ));
        host_config
            .binds
            .get_or_insert_with(Vec::new)
            .extend(carried);
    }
    let binds = host_config.binds.as_ref().map_or(0, Vec::len)
        + host_config.mounts.as_ref().map_or(0, Vec::len);
    if binds > 0 {
        notes.push(format!("{binds} binds/mounts kept"));
    }
    if let Some(policy) = host_config.restart_policy.as_ref() {
        notes.push(format!(
            "restart policy kept: {}",
            restart_policy_words(policy)
        ));
    }

    let (networking_config, extra_networks) = networks(old, &old_id, &mode);
    let mut names: Vec<String> = networking_config
        .iter()
        .flat_map(|n| n.endpoints_config.iter().flatten())
        .chain(extra_networks.iter().map(|(n, s)| (n, s)))
        .map(|(n, s)| match &s.aliases {
            Some(a) => format!("{n} (aliases {})", a.join(", ")),
            None => n.clone(),
        })
        .collect();
    names.sort();
    if !names.is_empty() {
        notes.push(format!("networks kept: {}", names.join(", ")));
    } else {
        notes.push(format!("network mode kept: {mode}"));
    }

    let hostname_allowed = !(mode == "host" || mode.starts_with("container:"));
    let body = ContainerCreateBody {
        image: Some(new_image.to_string()),
        hostname: body_config.hostname.filter(|_| hostname_allowed),
        attach_stdin: config.attach_stdin,
        attach_stdout: config.attach_stdout,
        attach_stderr: config.attach_stderr,
        tty: config.tty,
        open_stdin: config.open_stdin,
        stdin_once: config.stdin_once,
        network_disabled: config.network_disabled,
        stop_timeout: config.stop_timeout,
        host_config: Some(host_config),
        networking_config,
        ..body_config
    };
    Plan {
        body,
        extra_networks,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, EndpointIpamConfig, MountPoint, NetworkSettings};

    const OLD_ID: &str = "79299ef5c1bda2ab219629e0d14ac3354962587f12491a0fe12a329363598b5b";

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn image() -> ImageConfig {
        ImageConfig {
            env: Some(strings(&["PATH=/usr/bin:/bin", "APP_VERSION=1.0"])),
            cmd: Some(strings(&["/bin/busybox", "httpd", "-f"])),
            labels: Some(HashMap::from([(
                "org.example.version".to_string(),
                "1.0".to_string(),
            )])),
            exposed_ports: Some(strings(&["8080/tcp"])),
            volumes: Some(strings(&["/cache"])),
            healthcheck: Some(HealthConfig {
                test: Some(strings(&["CMD", "/bin/busybox", "true"])),
                interval: Some(1_000_000_000),
                retries: Some(2),
                ..HealthConfig::default()
            }),
            ..ImageConfig::default()
        }
    }

    /// A container as `docker run` made it from [`image`].
    fn container() -> ContainerInspectResponse {
        ContainerInspectResponse {
            id: Some(OLD_ID.to_string()),
            name: Some("/web".to_string()),
            config: Some(ContainerConfig {
                hostname: Some("79299ef5c1bd".to_string()),
                env: Some(strings(&[
                    "MODE=prod",
                    "PATH=/usr/bin:/bin",
                    "APP_VERSION=1.0",
                ])),
                cmd: Some(strings(&["/bin/busybox", "httpd", "-f"])),
                image: Some("app:1.0".to_string()),
                labels: Some(HashMap::from([
                    ("org.example.version".to_string(), "1.0".to_string()),
                    ("team".to_string(), "payments".to_string()),
                ])),
                exposed_ports: Some(strings(&["8080/tcp"])),
                volumes: Some(strings(&["/cache"])),
                healthcheck: image().healthcheck,
                ..ContainerConfig::default()
            }),
            host_config: Some(HostConfig {
                binds: Some(strings(&["/srv/data:/data:ro"])),
                network_mode: Some("appnet".to_string()),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::ON_FAILURE),
                    maximum_retry_count: Some(3),
                }),
                links: Some(strings(&["/db:/web/db"])),
                memory: Some(64 * 1024 * 1024),
                ..HostConfig::default()
            }),
            mounts: Some(vec![
                MountPoint {
                    typ: Some("bind".to_string()),
                    source: Some("/srv/data".to_string()),
                    destination: Some("/data".to_string()),
                    rw: Some(false),
                    ..MountPoint::default()
                },
                MountPoint {
                    typ: Some("volume".to_string()),
                    name: Some("3f2a9c".to_string()),
                    destination: Some("/cache".to_string()),
                    rw: Some(true),
                    ..MountPoint::default()
                },
            ]),
            network_settings: Some(NetworkSettings {
                networks: Some(HashMap::from([
                    (
                        "appnet".to_string(),
                        EndpointSettings {
                            aliases: Some(strings(&["web-alias", "79299ef5c1bd"])),
                            network_id: Some("c78781b6".to_string()),
                            ip_address: Some("172.18.0.2".to_string()),
                            mac_address: Some("02:42:ac:12:00:02".to_string()),
                            ipam_config: Some(EndpointIpamConfig {
                                ipv4_address: Some("172.18.0.50".to_string()),
                                ..EndpointIpamConfig::default()
                            }),
                            ..EndpointSettings::default()
                        },
                    ),
                    (
                        "backend".to_string(),
                        EndpointSettings {
                            aliases: Some(strings(&["api", "79299ef5c1bd"])),
                            ..EndpointSettings::default()
                        },
                    ),
                ])),
                ..NetworkSettings::default()
            }),
            ..ContainerInspectResponse::default()
        }
    }

    #[test]
    fn user_settings_are_kept_and_image_defaults_left_to_the_new_image() {
        let plan = plan(&container(), Some(&image()), "app:1.1");
        let b = &plan.body;
        assert_eq!(b.image.as_deref(), Some("app:1.1"));
        assert_eq!(b.env, Some(strings(&["MODE=prod"])));
        assert_eq!(
            b.labels,
            Some(HashMap::from([(
                "team".to_string(),
                "payments".to_string()
            )]))
        );
        assert_eq!(b.cmd, None);
        assert_eq!(b.entrypoint, None);
        assert_eq!(b.healthcheck, None);
        assert_eq!(b.exposed_ports, None);
        assert_eq!(b.volumes, None);
        // Docker's default hostname (the short id) is not pinned.
        assert_eq!(b.hostname, None);
        let notes = plan.notes.join("\n");
        assert!(notes.contains("env kept: MODE"), "{notes}");
        assert!(
            notes.contains("env from the old image, now the new image's: PATH, APP_VERSION"),
            "{notes}"
        );
    }

    #[test]
    fn host_config_is_kept_with_links_rewritten_and_unnamed_volumes_carried() {
        let plan = plan(&container(), Some(&image()), "app:1.1");
        let hc = match &plan.body.host_config {
            Some(hc) => hc,
            None => panic!("no host config"),
        };
        assert_eq!(
            hc.binds,
            Some(strings(&["/srv/data:/data:ro", "3f2a9c:/cache"]))
        );
        assert_eq!(hc.links, Some(strings(&["db:db"])));
        assert_eq!(hc.memory, Some(64 * 1024 * 1024));
        assert_eq!(hc.network_mode.as_deref(), Some("appnet"));
        assert_eq!(
            hc.restart_policy,
            Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ON_FAILURE),
                maximum_retry_count: Some(3),
            })
        );
    }

    #[test]
    fn networks_keep_aliases_and_static_ips_without_the_old_short_id() {
        let plan = plan(&container(), Some(&image()), "app:1.1");
        let create = plan
            .body
            .networking_config
            .as_ref()
            .and_then(|n| n.endpoints_config.as_ref());
        let appnet = match create.and_then(|e| e.get("appnet")) {
            Some(e) => e,
            None => panic!("appnet not in the create request: {create:?}"),
        };
        assert_eq!(create.map(HashMap::len), Some(1));
        assert_eq!(appnet.aliases, Some(strings(&["web-alias"])));
        assert_eq!(
            appnet
                .ipam_config
                .as_ref()
                .and_then(|c| c.ipv4_address.as_deref()),
            Some("172.18.0.50")
        );
        // Runtime facts are not requests.
        assert_eq!(appnet.ip_address, None);
        assert_eq!(appnet.mac_address, None);
        assert_eq!(appnet.network_id, None);
        assert_eq!(plan.extra_networks.len(), 1);
        assert_eq!(plan.extra_networks[0].0, "backend");
        assert_eq!(plan.extra_networks[0].1.aliases, Some(strings(&["api"])));
    }

    #[test]
    fn the_default_bridge_takes_no_aliases() {
        let mut c = container();
        if let Some(hc) = c.host_config.as_mut() {
            hc.network_mode = Some("default".to_string());
        }
        c.network_settings = Some(NetworkSettings {
            networks: Some(HashMap::from([(
                "bridge".to_string(),
                EndpointSettings {
                    aliases: Some(strings(&["x"])),
                    ..EndpointSettings::default()
                },
            )])),
            ..NetworkSettings::default()
        });
        let plan = plan(&c, Some(&image()), "app:1.1");
        let bridge = plan
            .body
            .networking_config
            .and_then(|n| n.endpoints_config)
            .and_then(|mut e| e.remove("bridge"));
        assert_eq!(bridge.map(|b| b.aliases), Some(None));
        assert!(plan.extra_networks.is_empty());
    }

    #[test]
    fn host_network_takes_neither_endpoints_nor_a_hostname() {
        let mut c = container();
        if let Some(hc) = c.host_config.as_mut() {
            hc.network_mode = Some("host".to_string());
        }
        if let Some(cfg) = c.config.as_mut() {
            cfg.hostname = Some("buildhost".to_string());
        }
        let plan = plan(&c, Some(&image()), "app:1.1");
        assert_eq!(plan.body.networking_config, None);
        assert!(plan.extra_networks.is_empty());
        assert_eq!(plan.body.hostname, None);
    }

    #[test]
    fn a_user_command_is_kept_and_a_user_entrypoint_keeps_its_command() {
        let mut c = container();
        if let Some(cfg) = c.config.as_mut() {
            cfg.cmd = Some(strings(&["/bin/busybox", "sleep", "3600"]));
            cfg.hostname = Some("web1".to_string());
        }
        let p = plan(&c, Some(&image()), "app:1.1");
        assert_eq!(
            p.body.cmd,
            Some(strings(&["/bin/busybox", "sleep", "3600"]))
        );
        assert_eq!(p.body.entrypoint, None);
        assert_eq!(p.body.hostname.as_deref(), Some("web1"));

        // --entrypoint with the image's own CMD repeated: both are the user's.
        if let Some(cfg) = c.config.as_mut() {
            cfg.entrypoint = Some(strings(&["/bin/busybox"]));
            cfg.cmd = Some(strings(&["/bin/busybox", "httpd", "-f"]));
        }
        let p = plan(&c, Some(&image()), "app:1.1");
        assert_eq!(p.body.entrypoint, Some(strings(&["/bin/busybox"])));
        assert_eq!(p.body.cmd, Some(strings(&["/bin/busybox", "httpd", "-f"])));

        // --entrypoint "" on an image with an entrypoint stays reset.
        let mut img = image();
        img.entrypoint = Some(strings(&["/entry.sh"]));
        if let Some(cfg) = c.config.as_mut() {
            cfg.entrypoint = None;
        }
        let p = plan(&c, Some(&img), "app:1.1");
        assert_eq!(p.body.entrypoint, Some(strings(&[""])));
    }

    #[test]
    fn healthcheck_fields_are_kept_one_by_one() {
        let mut c = container();
        if let Some(cfg) = c.config.as_mut() {
            // --health-interval=5s on the image's test.
            cfg.healthcheck = Some(HealthConfig {
                interval: Some(5_000_000_000),
                ..image().healthcheck.unwrap_or_default()
            });
        }
        let p = plan(&c, Some(&image()), "app:1.1");
        assert_eq!(
            p.body.healthcheck,
            Some(HealthConfig {
                interval: Some(5_000_000_000),
                ..HealthConfig::default()
            })
        );
        // --no-healthcheck is kept.
        if let Some(cfg) = c.config.as_mut() {
            cfg.healthcheck = Some(HealthConfig {
                test: Some(strings(&["NONE"])),
                ..HealthConfig::default()
            });
        }
        let p = plan(&c, Some(&image()), "app:1.1");
        assert_eq!(
            p.body.healthcheck.and_then(|h| h.test),
            Some(strings(&["NONE"]))
        );
    }

    #[test]
    fn without_the_old_image_everything_is_kept() {
        let p = plan(&container(), None, "app:1.1");
        assert_eq!(
            p.body.env,
            Some(strings(&[
                "MODE=prod",
                "PATH=/usr/bin:/bin",
                "APP_VERSION=1.0"
            ]))
        );
        assert_eq!(p.body.cmd, Some(strings(&["/bin/busybox", "httpd", "-f"])));
        assert!(
            p.notes[0].contains("could not be inspected"),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn restart_policies_read_as_docker_run_takes_them() {
        let policy = |name, n| RestartPolicy {
            name,
            maximum_retry_count: n,
        };
        assert_eq!(
            restart_policy_words(&policy(Some(RestartPolicyNameEnum::ON_FAILURE), Some(3))),
            "on-failure:3"
        );
        assert_eq!(
            restart_policy_words(&policy(Some(RestartPolicyNameEnum::ON_FAILURE), Some(0))),
            "on-failure"
        );
        assert_eq!(
            restart_policy_words(&policy(Some(RestartPolicyNameEnum::UNLESS_STOPPED), None)),
            "unless-stopped"
        );
        assert_eq!(
            restart_policy_words(&policy(Some(RestartPolicyNameEnum::EMPTY), None)),
            "no"
        );
        assert_eq!(restart_policy_words(&policy(None, None)), "no");
    }

    #[test]
    fn bind_destinations_and_links_parse() {
        assert_eq!(bind_destination("/a:/b:ro"), Some("/b"));
        assert_eq!(bind_destination("vol:/b"), Some("/b"));
        assert_eq!(bind_destination("/only"), Some("/only"));
        assert_eq!(create_link("/db:/web/db"), "db:db");
        assert_eq!(create_link("db:alias"), "db:alias");
    }
}
