{{/*
The rules of deploy/rbac.yaml (keep them identical: scripts/helm.sh check compares them), split
into the ones on namespaced kinds, the Event rule and the ConfigMap rule (in the release
namespace). Argument of weir.rbac.namespacedRules: (dict "namespaced" bool); with namespaced
true, IngressClasses (cluster-scoped) are left out.
*/}}
{{- define "weir.rbac.namespacedRules" }}
# What the routing table is built from.
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"{{ if not .namespaced }}, "ingressclasses"{{ end }}]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["services", "endpoints"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
# TLS certificates (weir lists only Secrets of type kubernetes.io/tls) and the Secrets
# annotations name (auth-secret, auth-tls-secret: each watched by name); RBAC cannot express
# either selector. Of the TLS Secrets, only those weir's Ingresses name keep their data.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
# The ConfigMaps annotations name (auth-proxy-set-headers: the headers of the authentication
# sub-request), each watched by name; no other ConfigMap is read.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch"]
# Where weir's Ingresses are served: the leader writes status.loadBalancer with a merge
# patch (it never replaces the whole status, so it needs no update).
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses/status"]
  verbs: ["patch"]
{{- end }}
{{- define "weir.rbac.eventRules" }}
# Diagnostics become events.k8s.io/v1 Events on the objects they concern, in any namespace
# (create; patch when an Event repeats).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
{{- define "weir.rbac.configMapRules" }}
# The controller ConfigMap (--configmap) in weir's own namespace: weir lists and watches it
# with the field selector metadata.name=NAME. Not narrowed with resourceNames: the API server
# checks resourceNames on a list or watch only through that exact field selector, which would
# tie the rule to how weir's client phrases its requests, and a refused watch leaves weir
# unready (its first table waits for every watcher). With rbac.scope namespace, the release
# namespace may not be the watched one, hence this rule of its own.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch"]
{{- end }}
