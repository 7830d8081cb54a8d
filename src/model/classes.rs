//! Class selection: which Ingresses weir serves.

use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use super::ClassConfig;

/// The deprecated annotation that names an Ingress's class; it takes precedence over
/// `spec.ingressClassName` (as in ingress-nginx).
pub(crate) const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// The IngressClass annotation that makes a class the default for Ingresses that name none.
pub(crate) const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// What the IngressClasses of the input say about weir's classes.
#[derive(Debug)]
pub(crate) struct Classes<'a> {
    classes: &'a [Arc<IngressClass>],
    config: &'a ClassConfig,
    /// Whether Ingresses without any class are weir's.
    classless_are_ours: bool,
}

impl<'a> Classes<'a> {
    /// Reads the IngressClasses once.
    pub(crate) fn new(classes: &'a [Arc<IngressClass>], config: &'a ClassConfig) -> Self {
        let default_is_ours = classes.iter().any(|c| {
            is_our_controller(c, config)
                && c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .is_some_and(|v| v == "true")
        });
        Classes {
            classes,
            config,
            classless_are_ours: default_is_ours || config.watch_ingress_without_class,
        }
    }

    /// Whether weir serves `ingress`:
    ///
    /// 1. If the legacy annotation `kubernetes.io/ingress.class` is set, it decides alone: the
    ///    Ingress is weir's when it equals [`ClassConfig::ingress_class`].
    /// 2. Else, if `spec.ingressClassName` names a class X: weir's when an IngressClass named X
    ///    has `spec.controller` equal to [`ClassConfig::controller_name`]. When **no**
    ///    IngressClass named X exists at all, the Ingress is weir's when X equals
    ///    [`ClassConfig::ingress_class`]: this lets a manifests directory (or a cluster where
    ///    the class object was not installed) use `ingressClassName: weir` without also
    ///    declaring the IngressClass. An IngressClass X of another controller always wins.
    /// 3. Else (no class at all, an empty `ingressClassName` counts as none): weir's when an
    ///    IngressClass of weir's controller is annotated
    ///    `ingressclass.kubernetes.io/is-default-class: "true"`, or when
    ///    [`ClassConfig::watch_ingress_without_class`] is set.
    pub(crate) fn is_ours(&self, ingress: &Ingress) -> bool {
        let legacy = ingress
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION));
        if let Some(class) = legacy {
            return *class == self.config.ingress_class;
        }
        let class_name = ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref())
            .filter(|n| !n.is_empty());
        let Some(class_name) = class_name else {
            return self.classless_are_ours;
        };
        let mut named = self
            .classes
            .iter()
            .filter(|c| c.metadata.name.as_deref() == Some(class_name))
            .peekable();
        if named.peek().is_none() {
            return class_name == self.config.ingress_class;
        }
        named.any(|c| is_our_controller(c, self.config))
    }
}

fn is_our_controller(class: &IngressClass, config: &ClassConfig) -> bool {
    class
        .spec
        .as_ref()
        .and_then(|s| s.controller.as_deref())
        .is_some_and(|c| c == config.controller_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{ingress, ingress_class, shared};

    const OURS: &str = "weir.dev/ingress-controller";
    const NGINX: &str = "k8s.io/ingress-nginx";

    #[test]
    fn class_selection() {
        let watch_all = ClassConfig {
            watch_ingress_without_class: true,
            ..ClassConfig::default()
        };
        let plain = ClassConfig::default();
        let custom = ClassConfig {
            ingress_class: "edge".into(),
            ..ClassConfig::default()
        };
        let rows: Vec<(&str, Ingress, Vec<IngressClass>, &ClassConfig, bool)> = vec![
            (
                "class name with our IngressClass",
                ingress("d", "i").class("weir").build(),
                vec![ingress_class("weir", OURS, false)],
                &plain,
                true,
            ),
            (
                "class name with a differently named IngressClass of ours",
                ingress("d", "i").class("internal").build(),
                vec![ingress_class("internal", OURS, false)],
                &plain,
                true,
            ),
            (
                "class name without any IngressClass object, equal to ours",
                ingress("d", "i").class("weir").build(),
                vec![],
                &plain,
                true,
            ),
            (
                "class name without IngressClass object, configured class name",
                ingress("d", "i").class("edge").build(),
                vec![],
                &custom,
                true,
            ),
            (
                "class name without IngressClass object, not ours",
                ingress("d", "i").class("nginx").build(),
                vec![],
                &plain,
                false,
            ),
            (
                "IngressClass of our name but another controller",
                ingress("d", "i").class("weir").build(),
                vec![ingress_class("weir", NGINX, false)],
                &plain,
                false,
            ),
            (
                "class name of another controller",
                ingress("d", "i").class("nginx").build(),
                vec![
                    ingress_class("nginx", NGINX, true),
                    ingress_class("weir", OURS, true),
                ],
                &watch_all,
                false,
            ),
            (
                "legacy annotation ours",
                ingress("d", "i").legacy_class("weir").build(),
                vec![],
                &plain,
                true,
            ),
            (
                "legacy annotation ours beats a foreign class name",
                ingress("d", "i")
                    .legacy_class("weir")
                    .class("nginx")
                    .build(),
                vec![ingress_class("nginx", NGINX, false)],
                &plain,
                true,
            ),
            (
                "legacy annotation not ours beats our class name",
                ingress("d", "i")
                    .legacy_class("nginx")
                    .class("weir")
                    .build(),
                vec![ingress_class("weir", OURS, false)],
                &watch_all,
                false,
            ),
            (
                "no class, our IngressClass is the default",
                ingress("d", "i").build(),
                vec![ingress_class("weir", OURS, true)],
                &plain,
                true,
            ),
            (
                "no class, the default IngressClass belongs to another controller",
                ingress("d", "i").build(),
                vec![
                    ingress_class("nginx", NGINX, true),
                    ingress_class("weir", OURS, false),
                ],
                &plain,
                false,
            ),
            (
                "no class, watch-ingress-without-class",
                ingress("d", "i").build(),
                vec![],
                &watch_all,
                true,
            ),
            (
                "empty class name counts as none",
                ingress("d", "i").class("").build(),
                vec![ingress_class("weir", OURS, true)],
                &plain,
                true,
            ),
            (
                "no class and no default",
                ingress("d", "i").build(),
                vec![ingress_class("weir", OURS, false)],
                &plain,
                false,
            ),
        ];
        for (name, ing, classes, config, want) in rows {
            let got = Classes::new(&shared(classes), config).is_ours(&ing);
            assert_eq!(got, want, "{name}");
        }
    }
}
