//! The security contexts of a revision's pods: Flint's defaults, and how a
//! Function's own settings replace them. Pure.
//!
//! The defaults pass the Pod Security "restricted" level wherever the image
//! allows: no privilege escalation, every capability dropped, the runtime's
//! default seccomp profile. `runAsNonRoot` is left to the Function, since
//! many images run as root and would not start with it.
//!
//! The rule is field by field: each top-level field a Function sets replaces
//! the default's field of the same name (so a Function's `capabilities`
//! replaces the default's whole `capabilities`), and every field it leaves
//! out keeps the default. For sidecars and init containers, their own
//! `securityContext` replaces the result the same way.

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, SeccompProfile, SecurityContext,
};

/// The seccomp profile type the pod defaults to.
pub const DEFAULT_SECCOMP_PROFILE: &str = "RuntimeDefault";

/// Flint's default container security context, before a Function's.
pub fn default_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

/// Flint's default pod security context, before a Function's.
pub fn default_pod() -> PodSecurityContext {
    PodSecurityContext {
        seccomp_profile: Some(SeccompProfile {
            type_: DEFAULT_SECCOMP_PROFILE.to_owned(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// `over`'s fields where set, `base`'s elsewhere. The default
/// `allowPrivilegeEscalation: false` is dropped for a container that is
/// privileged or adds CAP_SYS_ADMIN, which Kubernetes refuses to combine
/// with it; an explicit `false` there is refused by validation instead.
pub fn container(base: &SecurityContext, over: Option<&SecurityContext>) -> SecurityContext {
    let Some(over) = over else {
        return base.clone();
    };
    let mut merged = SecurityContext {
        allow_privilege_escalation: over
            .allow_privilege_escalation
            .or(base.allow_privilege_escalation),
        app_armor_profile: over
            .app_armor_profile
            .clone()
            .or_else(|| base.app_armor_profile.clone()),
        capabilities: over
            .capabilities
            .clone()
            .or_else(|| base.capabilities.clone()),
        privileged: over.privileged.or(base.privileged),
        proc_mount: over.proc_mount.clone().or_else(|| base.proc_mount.clone()),
        read_only_root_filesystem: over
            .read_only_root_filesystem
            .or(base.read_only_root_filesystem),
        run_as_group: over.run_as_group.or(base.run_as_group),
        run_as_non_root: over.run_as_non_root.or(base.run_as_non_root),
        run_as_user: over.run_as_user.or(base.run_as_user),
        se_linux_options: over
            .se_linux_options
            .clone()
            .or_else(|| base.se_linux_options.clone()),
        seccomp_profile: over
            .seccomp_profile
            .clone()
            .or_else(|| base.seccomp_profile.clone()),
        windows_options: over
            .windows_options
            .clone()
            .or_else(|| base.windows_options.clone()),
    };
    if over.allow_privilege_escalation.is_none() && needs_escalation(&merged) {
        merged.allow_privilege_escalation = None;
    }
    merged
}

/// Whether Kubernetes refuses `allowPrivilegeEscalation: false` for this
/// context: a privileged container, or one that adds CAP_SYS_ADMIN.
fn needs_escalation(c: &SecurityContext) -> bool {
    let adds_sys_admin = c
        .capabilities
        .as_ref()
        .and_then(|caps| caps.add.as_ref())
        .is_some_and(|add| add.iter().any(|a| a == "SYS_ADMIN" || a == "CAP_SYS_ADMIN"));
    c.privileged == Some(true) || adds_sys_admin
}

/// The pod security context: `over`'s fields where set, the default's elsewhere.
pub fn pod(over: Option<&PodSecurityContext>) -> PodSecurityContext {
    let base = default_pod();
    let Some(over) = over else {
        return base;
    };
    PodSecurityContext {
        seccomp_profile: over.seccomp_profile.clone().or(base.seccomp_profile),
        ..over.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_restricted_without_run_as_non_root() {
        let c = container(&default_container(), None);
        assert_eq!(c.allow_privilege_escalation, Some(false));
        assert_eq!(
            c.capabilities.and_then(|c| c.drop),
            Some(vec!["ALL".to_owned()])
        );
        assert_eq!(c.run_as_non_root, None);
        let p = pod(None);
        assert_eq!(
            p.seccomp_profile.map(|s| s.type_).as_deref(),
            Some("RuntimeDefault")
        );
        assert_eq!(p.run_as_non_root, None);
    }

    #[test]
    fn a_given_field_replaces_the_default_field_and_the_rest_stays() {
        let given = SecurityContext {
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_BIND_SERVICE".to_owned()]),
                drop: None,
            }),
            ..SecurityContext::default()
        };
        let c = container(&default_container(), Some(&given));
        assert_eq!(c.run_as_non_root, Some(true));
        assert_eq!(c.capabilities, given.capabilities, "replaced whole");
        assert_eq!(c.allow_privilege_escalation, Some(false), "kept");

        let given = PodSecurityContext {
            run_as_user: Some(1000),
            ..PodSecurityContext::default()
        };
        let p = pod(Some(&given));
        assert_eq!(p.run_as_user, Some(1000));
        assert_eq!(
            p.seccomp_profile.map(|s| s.type_).as_deref(),
            Some("RuntimeDefault")
        );
        let unconfined = PodSecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "Unconfined".to_owned(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        };
        assert_eq!(
            pod(Some(&unconfined))
                .seccomp_profile
                .map(|s| s.type_)
                .as_deref(),
            Some("Unconfined")
        );
    }

    #[test]
    fn privileged_containers_do_not_get_the_escalation_default() {
        for given in [
            SecurityContext {
                privileged: Some(true),
                ..SecurityContext::default()
            },
            SecurityContext {
                capabilities: Some(Capabilities {
                    add: Some(vec!["SYS_ADMIN".to_owned()]),
                    drop: None,
                }),
                ..SecurityContext::default()
            },
        ] {
            let c = container(&default_container(), Some(&given));
            assert_eq!(c.allow_privilege_escalation, None, "{given:?}");
        }
    }
}
