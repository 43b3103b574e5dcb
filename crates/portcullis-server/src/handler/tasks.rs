//! `tasks/get`, `tasks/update` and `tasks/cancel` (the Tasks extension): a principal's own
//! tasks only; each answered, logged and counted here (they reach no pack: the task's call
//! went through the guard when it started, and a resumed round goes through it again).

use rmcp::model::{CancelTaskParams, GetTaskParams, GetTaskResult, UpdateTaskParams};

use super::*;

impl PortcullisHandler {
    /// The principal a task request comes from (none: refused as any request without one).
    fn task_principal(&self, context: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
        self.principal(context)
            .ok_or_else(crate::error::unauthenticated)
    }

    pub(super) async fn tasks_get(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        let principal = self.task_principal(&context)?;
        let tasks = Arc::clone(&self.inner().guard.tasks);
        tasks.get(&request.task_id, principal.id()).await
    }

    pub(super) async fn tasks_update(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let principal = self.task_principal(&context)?;
        let tasks = Arc::clone(&self.inner().guard.tasks);
        let next = tasks
            .answer(
                &request.task_id,
                principal.id(),
                request.input_responses,
                &self.replica(),
            )
            .await?;
        if let Some(record) = next {
            tracing::info!(
                rpc.method = "tasks/update",
                principal = %principal,
                tool = record.tool,
                "a task's next round starts"
            );
            let id = record.id.clone();
            self.resume_task(record, context);
            tasks.resumed(&id).await;
        }
        Ok(())
    }

    pub(super) async fn tasks_cancel(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let principal = self.task_principal(&context)?;
        let tasks = Arc::clone(&self.inner().guard.tasks);
        tasks.cancel(&request.task_id, principal.id()).await?;
        tracing::info!(rpc.method = "tasks/cancel", principal = %principal, "a task was cancelled");
        Ok(())
    }
}
