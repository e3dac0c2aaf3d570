//! Certificates of a project: keys sealed on the way in, opened only to build a device's config;
//! a certificate a listener uses cannot be deleted.
use lbaas::agent::v1 as agent;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, Condition, DatabaseTransaction, EntityTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _, Set,
};

use super::{Page, Store, new_id, page_size, paginate};
use crate::{
    certs::{NewCertificate, SecretKey},
    convert::{join_tags, split_tags},
    entity::{certificate, listener},
    error::ApiError,
    now_ms,
};

impl Store {
    fn secret(&self) -> Result<&SecretKey, ApiError> {
        self.secret.as_ref().ok_or_else(|| {
            ApiError::FailedPrecondition(
                "certificates need a secret key to seal them: start the api with --secret-key-file"
                    .into(),
            )
        })
    }

    pub async fn create_certificate(
        &self,
        project: &str,
        new: NewCertificate,
    ) -> Result<certificate::Model, ApiError> {
        let sealed_key = self.secret()?.seal(&new.private_key_pem)?;
        Ok(certificate::ActiveModel {
            id: Set(new_id()),
            project_id: Set(project.to_owned()),
            name: Set(new.name),
            certificate_pem: Set(new.certificate_pem),
            sealed_key: Set(sealed_key),
            subject_names: Set(join_tags(&new.subject_names)),
            expire_ms: Set(new.expire_ms),
            created_ms: Set(now_ms()),
        }
        .insert(&self.db)
        .await?)
    }

    pub async fn get_certificate(
        &self,
        project: &str,
        id: &str,
    ) -> Result<certificate::Model, ApiError> {
        certificate::Entity::find_by_id(id)
            .filter(certificate::Column::ProjectId.eq(project))
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("certificate {id}")))
    }

    pub async fn list_certificates(
        &self,
        project: &str,
        size: i32,
        token: &str,
    ) -> Result<Page<certificate::Model>, ApiError> {
        let size = page_size(size)?;
        let mut query = certificate::Entity::find()
            .filter(certificate::Column::ProjectId.eq(project))
            .order_by_asc(certificate::Column::Id);
        if !token.is_empty() {
            query = query.filter(certificate::Column::Id.gt(token));
        }
        Ok(paginate(
            query.limit(size + 1).all(&self.db).await?,
            size,
            |m| m.id.clone(),
        ))
    }

    pub async fn delete_certificate(&self, project: &str, id: &str) -> Result<(), ApiError> {
        let txn = self.write().await?;
        let found = certificate::Entity::find_by_id(id)
            .filter(certificate::Column::ProjectId.eq(project))
            .one(&txn)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("certificate {id}")))?;
        if let Some(user) = listener::Entity::find()
            .filter(
                Condition::any()
                    .add(listener::Column::DefaultTlsContainerRef.eq(found.id.as_str()))
                    .add(listener::Column::SniContainerRefs.contains(format!("\n{}\n", found.id))),
            )
            .one(&txn)
            .await?
        {
            return Err(ApiError::FailedPrecondition(format!(
                "certificate {id} is used by listener {}; change or delete the listener first",
                user.id
            )));
        }
        certificate::Entity::delete_by_id(id).exec(&txn).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Checks a listener's certificate references: each names a certificate of the project.
    pub(crate) async fn check_certificates(
        txn: &DatabaseTransaction,
        project: &str,
        field: &str,
        default: Option<&str>,
        sni: &[String],
    ) -> Result<(), ApiError> {
        let mut wanted: Vec<(String, &str)> = Vec::new();
        if let Some(d) = default {
            wanted.push((format!("{field}.default_tls_container_ref"), d));
        }
        for (i, r) in sni.iter().enumerate() {
            wanted.push((format!("{field}.sni_container_refs[{i}]"), r.as_str()));
        }
        let mut violations = Vec::new();
        for (f, id) in wanted {
            let found = certificate::Entity::find_by_id(id)
                .filter(certificate::Column::ProjectId.eq(project))
                .one(txn)
                .await?;
            if found.is_none() {
                violations.push((f, "names no certificate of this project".to_owned()));
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid(violations))
        }
    }

    /// The certificate with its key opened, for a device.
    pub(crate) async fn tls_certificate(
        &self,
        id: &str,
    ) -> Result<agent::TlsCertificate, ApiError> {
        let found = certificate::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("certificate {id}")))?;
        Ok(agent::TlsCertificate {
            private_key_pem: self.secret()?.open(&found.sealed_key)?,
            names: split_tags(&found.subject_names),
            certificate_pem: found.certificate_pem,
            id: found.id,
        })
    }
}
