//! The Skills extension (SEP-2640): `skills/list` filtered by the scopes of each skill's
//! folder like every list, `skills/get` and `resources/directory/read` through the guard as
//! resource requests of the skill's `SKILL.md` or directory (scopes, limits, timeout, log
//! line, metrics, audit). The skills' files are resources, read by `resources/read`.

use rmcp::model::{
    GetSkillRequestParams, GetSkillResult, ListSkillsResult, ReadResourceDirectoryRequestParams,
    ReadResourceDirectoryResult,
};

use super::resources::{RESOURCE_PAGE, resource_request};
use super::*;

impl PortcullisHandler {
    pub(super) async fn skills_list(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListSkillsResult, ErrorData> {
        let inner = self.inner();
        let catalog = &inner.catalog;
        let policies = &inner.guard.policies;
        let principal = self.principal(&context);
        let start = match request.and_then(|r| r.cursor) {
            None => 0,
            Some(cursor) => cursor
                .parse::<usize>()
                .map_err(|_| crate::error::bad_cursor())?,
        };
        let mut visible: Vec<_> = catalog
            .skills()
            .into_iter()
            .filter(|(_, skill)| {
                policies
                    .scopes_for(catalog, Target::Resource(&skill.uri))
                    .is_some_and(|scopes| Self::visible(&inner, principal.as_ref(), &scopes))
            })
            .map(|(_, skill)| skill)
            .skip(start)
            .take(RESOURCE_PAGE + 1)
            .collect();
        let more = visible.len() > RESOURCE_PAGE;
        visible.truncate(RESOURCE_PAGE);
        let mut result = ListSkillsResult::with_all_items(visible);
        if more {
            result.next_cursor = Some((start + RESOURCE_PAGE).to_string());
        }
        Ok(result)
    }

    pub(super) async fn skills_get(
        &self,
        request: GetSkillRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetSkillResult, ErrorData> {
        let inner = self.inner();
        let principal = self.principal(&context);
        let origin = guard::Origin::of(&context);
        let uri = request.uri;
        let (source, label) =
            Self::resource(&inner, "skills/get", &uri, principal.as_ref(), &origin).await?;
        let logged = resource_request(&inner.guard, "skills/get", &uri, &label, principal, origin);
        let get = inner
            .guard
            .run(&inner.catalog, logged, context.ct, |_, _| async {
                match source.source.skill(&uri) {
                    Some(skill) => (Ok(GetSkillResult::new(skill)), Outcome::Ok),
                    None => (Err(crate::error::no_skill(&uri)), Outcome::NotFound),
                }
            });
        self.shared.in_flight.track_future(get).await
    }

    pub(super) async fn directory_read(
        &self,
        request: ReadResourceDirectoryRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceDirectoryResult, ErrorData> {
        let inner = self.inner();
        let principal = self.principal(&context);
        let origin = guard::Origin::of(&context);
        let uri = request.uri;
        let method = "resources/directory/read";
        let (source, label) =
            Self::resource(&inner, method, &uri, principal.as_ref(), &origin).await?;
        let logged = resource_request(&inner.guard, method, &uri, &label, principal, origin);
        let read = inner
            .guard
            .run(&inner.catalog, logged, context.ct, |_, _| async {
                match source.source.read_directory(&uri).await {
                    Ok(entries) => (
                        Ok(ReadResourceDirectoryResult::with_all_items(entries)),
                        Outcome::Ok,
                    ),
                    Err(error) => {
                        let outcome = match &error {
                            crate::ResourceError::NotFound(_) => Outcome::NotFound,
                            crate::ResourceError::Rejected(_) => Outcome::InvalidArguments,
                            crate::ResourceError::Internal { .. } => Outcome::InternalError,
                        };
                        (Err(resource_error(&uri, &label, error)), outcome)
                    }
                }
            });
        self.shared.in_flight.track_future(read).await
    }
}
