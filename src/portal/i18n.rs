//! The portal's two languages, English and Simplified Chinese: every text a page shows, by key.
//!
//! Pure. A key missing from the table shows the key itself, which the tests catch.

use serde::{Deserialize, Serialize};

/// A page language.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lang {
    /// English.
    #[default]
    En,
    /// Simplified Chinese.
    Zh,
}

impl Lang {
    /// From a `lang` query value or an `Accept-Language` header: Chinese for `zh*`, English otherwise.
    pub fn from_tag(tag: &str) -> Self {
        if tag.trim().to_ascii_lowercase().starts_with("zh") {
            Self::Zh
        } else {
            Self::En
        }
    }

    /// The BCP 47 tag for `<html lang>`.
    pub fn tag(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Zh => "zh-Hans",
        }
    }

    /// The other language, for the switch link.
    pub fn other(self) -> Self {
        match self {
            Self::En => Self::Zh,
            Self::Zh => Self::En,
        }
    }

    /// Short query value.
    pub fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Zh => "zh",
        }
    }
}

/// (key, English, Simplified Chinese).
const TEXTS: &[(&str, &str, &str)] = &[
    ("title", "Compound gate", "小区门禁"),
    ("lang_switch", "中文", "English"),
    ("home_intro", "Face entry is optional. Everyone can always enter with a PIN, a visitor pass or by calling the guard.", "刷脸通行是自愿的。任何人都可以随时使用密码、访客通行码或呼叫保安进入。"),
    ("resident_start", "I am a resident with an enrolment code", "我是持有登记码的住户"),
    ("resident_revoke", "Withdraw my consent and delete my face template", "撤回同意并删除我的人脸模板"),
    ("staff_login", "Staff sign-in (property manager, auditor, guard, installer)", "工作人员登录（物业管理、审计、保安、安装人员）"),
    ("signage", "Notice on face recognition at this gate", "本门禁人脸识别告知"),
    ("code_label", "Enrolment code (from the management office)", "登记码（由物业管理处提供）"),
    ("continue", "Continue", "继续"),
    ("code_bad", "This code is not valid, already used or expired. Ask the management office for a new one.", "此登记码无效、已使用或已过期。请向物业管理处申请新的登记码。"),
    ("notice_heading", "Face entry: what we do with your face", "刷脸通行：我们如何处理您的人脸信息"),
    ("notice_purpose", "Purpose: only to open this compound's gates for you. Nothing else.", "目的：仅用于为您开启本小区门禁，不作他用。"),
    ("notice_kept", "What is kept: a protected face template (transformed with a secret key and encrypted), never a photo. No record of when you pass is kept.", "保存内容：经密钥变换并加密的受保护人脸模板，绝不保存照片。不记录您的通行时间。"),
    ("notice_how_long", "How long: until you withdraw, or after {days} days without use.", "保存期限：直至您撤回同意，或连续 {days} 天未使用后自动删除。"),
    ("notice_where", "Where: only on the gate devices of this compound ({where}). It never leaves the compound.", "存储位置：仅在本小区的门禁设备上（{where}），不会离开本小区。"),
    ("notice_revoke", "How to withdraw: on this portal with your revocation code, at any time; the template is destroyed at once and you get a receipt.", "如何撤回：随时在本网站使用您的撤回码撤回，模板立即销毁，并向您出具回执。"),
    ("notice_alternative", "You do not have to use your face. A PIN, a visitor pass and the guard are always available and cost nothing.", "您无需使用人脸。密码、访客通行码和保安服务始终可用，且免费。"),
    ("notice_operator", "Operator: {operator}. Contact: {contact}.", "运营方：{operator}。联系方式：{contact}。"),
    ("consent_checkbox", "I separately and explicitly consent to the processing of my face for gate entry, as described above.", "我单独并明确同意按上述说明处理我的人脸信息用于门禁通行。"),
    ("consent_submit", "I consent: set up face entry", "我同意：开通刷脸通行"),
    ("consent_decline", "No thanks: PIN only", "不用了：仅使用密码"),
    ("consent_needed", "Tick the box to consent, or choose PIN only.", "请勾选同意，或选择仅使用密码。"),
    ("enrol_heading", "Face enrolment at the gate camera", "在门禁摄像头前登记人脸"),
    ("enrol_explain", "Stand in front of the gate camera, look at it, then press Start. This page never receives or shows an image.", "请站在门禁摄像头前并注视摄像头，然后点击开始。本页面不会接收或显示任何图像。"),
    ("enrol_start", "Start", "开始"),
    ("enrol_progress", "Good frames: {good} of {needed}", "合格画面：{good} / {needed}"),
    ("enrol_failed", "Enrolment did not complete", "登记未完成"),
    ("enrol_retry", "Try again", "重试"),
    ("enrol_done", "Your face template is enrolled and protected.", "您的人脸模板已登记并受保护。"),
    ("enrol_revocation", "Your revocation code: with it you can withdraw and delete your face template at any time (/revoke), even if you stop here. Keep it; it is shown only once:", "您的撤回码：凭此码可随时撤回并删除您的人脸模板（/revoke），即使您在此停止设置。请妥善保存，仅显示一次："),
    ("done_revocation_kept", "To withdraw, use the revocation code shown when your face was enrolled.", "如需撤回，请使用人脸登记时显示的撤回码。"),
    ("pin_heading", "Your PIN (the way in without your face)", "您的密码（不使用人脸的通行方式）"),
    ("pin_label", "PIN (4 to 8 digits)", "密码（4 至 8 位数字）"),
    ("pin_again", "PIN again", "再次输入密码"),
    ("pin_set", "Set PIN", "设置密码"),
    ("pin_mismatch", "The two PINs differ.", "两次输入的密码不一致。"),
    ("done_heading", "All set", "设置完成"),
    ("done_keypad", "At the keypad type: {code} # then your PIN #", "在键盘上输入：{code} # 然后输入密码 #"),
    ("done_revocation", "Your revocation code (keep it; it is shown only once):", "您的撤回码（请妥善保存，仅显示一次）："),
    ("revoke_heading", "Withdraw consent and delete your face template", "撤回同意并删除人脸模板"),
    ("revoke_label", "Revocation code", "撤回码"),
    ("revoke_submit", "Withdraw and delete now", "立即撤回并删除"),
    ("revoke_bad", "This revocation code is not known. Check it, or ask the management office.", "撤回码无效。请核对，或联系物业管理处。"),
    ("receipt_heading", "Receipt: your face data was deleted", "回执：您的人脸数据已删除"),
    ("receipt_time", "Deleted at", "删除时间"),
    ("receipt_deleted", "Deleted", "已删除"),
    ("receipt_code", "Verification code (an auditor can check it against the device's audit log)", "验证码（审计人员可据此核对设备审计日志）"),
    ("login_heading", "Staff sign-in", "工作人员登录"),
    ("login_name", "Name", "用户名"),
    ("login_password", "Password", "密码"),
    ("login_submit", "Sign in", "登录"),
    ("login_bad", "Wrong name or password, or too many attempts: wait and try again.", "用户名或密码错误，或尝试次数过多：请稍后再试。"),
    ("logout", "Sign out", "退出登录"),
    ("manager_heading", "Property manager", "物业管理"),
    ("guard_heading", "Guard", "保安"),
    ("guard_calls", "Calls from the gate (last 15 minutes)", "门口呼叫（最近15分钟）"),
    ("guard_no_calls", "No calls.", "没有呼叫。"),
    ("guard_no_gate", "This portal is not attached to a running gate: use the guard button at the gate.", "本门户未连接运行中的门禁：请使用门口的保安按钮。"),
    ("guard_call_time", "Time", "时间"),
    ("guard_call_gate", "Gate", "门"),
    ("guard_call_ago", "Waiting", "已等待"),
    ("guard_seconds_ago", "{n} s ago", "{n} 秒前"),
    ("guard_release_link", "Release the door of {gate}…", "开启{gate}的门…"),
    ("guard_release_heading", "Release the door", "开门"),
    ("guard_reason", "Reason (kept in the audit log with your account)", "原因（与您的账号一起记入审计日志）"),
    ("guard_reason_hint", "Say why, not who: for example \"delivery\", \"visitor without a pass\", \"resident's keypad code does not work\".", "请写原因，不写姓名：例如“送货”“访客没有通行码”“住户密码无法使用”。"),
    ("guard_reason_bad", "Give a reason of 3 to 200 characters on one line.", "请填写3到200个字符的原因（一行）。"),
    ("guard_release_submit", "Release the door now", "立即开门"),
    ("guard_release_failed", "The door was not released: {why}", "门未开启：{why}"),
    ("guard_released", "Door released; the release is in the audit log.", "门已开启；此次开门已记入审计日志。"),
    ("guard_back", "Back to the calls", "返回呼叫列表"),
    ("guard_pass_issue", "Issue a visitor pass (valid 2 hours)", "签发访客通行码（2小时有效）"),
    ("guard_pass_heading", "Visitor pass", "访客通行码"),
    ("guard_pass_valid", "Valid once, until {until}. Let the visitor photograph the code or show it to the gate camera.", "仅限使用一次，有效期至{until}。请访客拍下此码或向门口摄像头出示。"),
    ("installer_heading", "Aiming the camera", "摄像头对准"),
    ("installer_no_camera", "This gate has no camera.", "本门禁没有摄像头。"),
    ("installer_waiting", "Waiting for the camera's figures…", "正在等待摄像头数据…"),
    ("installer_figures", "brightness {b}/255, sharpness {s}", "亮度 {b}/255，清晰度 {s}"),
    ("installer_scene_ok", "light and focus good", "光线和对焦良好"),
    ("installer_too_dark", "too dark: add light or turn on the IR illuminator", "太暗：请增加照明或打开红外补光"),
    ("installer_too_bright", "too bright: the camera faces a light; turn or shade it", "太亮：摄像头正对光源，请调整角度或遮挡"),
    ("installer_blurred", "blurred: focus the lens where people stand, and clean it", "模糊：请在人站立的距离对焦并清洁镜头"),
    ("installer_no_detector", "The face models are not loaded: only the scene figures are shown.", "人脸模型未加载：仅显示画面数据。"),
    ("installer_no_face", "No face in view: stand where residents will stand.", "画面中没有人脸：请站在住户通行的位置。"),
    ("installer_faces", "{n} face(s) in view, {good} good enough to enrol.", "画面中有 {n} 张人脸，{good} 张达到登记要求。"),
    ("installer_box", "Box (px)", "框（像素）"),
    ("installer_eyes", "Eyes (px)", "眼距（像素）"),
    ("installer_hint", "Dashed: the zone a face must lie in. Dotted: the smallest face enrolment takes ({px} px between the eyes). Green: good; amber: too small, turned, tilted or at the edge.", "虚线：人脸须位于的区域。点线：登记所需的最小人脸（眼距 {px} 像素）。绿色：合格；橙色：太小、侧脸、倾斜或在边缘。"),
    ("manager_enrolled", "Residents set up (face or PIN, each household's own choice): {n}", "已开通通行的住户（刷脸或密码，由各户自行选择）：{n}"),
    ("manager_needs_staff", "needs staff: finish the face enrolment in person", "需人工办理：请当面完成人脸登记"),
    ("signage_fingerprint", "This portal's certificate (SHA-256), to compare with what your browser shows:", "本门户证书指纹（SHA-256），请与浏览器显示的核对："),
    ("manager_counts", "Entries (anonymized counts; 1 to 10 are not shown)", "通行统计（匿名计数；1 至 10 不显示）"),
    ("manager_by_day", "By day, last 14 days", "按日，近 14 天"),
    ("manager_by_hour", "By hour, yesterday (today is shown tomorrow)", "按小时，昨日（今日数据次日显示）"),
    ("manager_csv", "Download CSV", "下载 CSV"),
    ("manager_codes", "Enrolment codes", "登记码"),
    ("manager_unit", "Unit (household)", "房号（住户）"),
    ("manager_issue", "Issue code", "生成登记码"),
    ("manager_issued", "Give this code to the household (shown once):", "请将此登记码交给住户（仅显示一次）："),
    ("manager_cancel", "Cancel", "作废"),
    ("manager_residents", "Residents who can withdraw, by unit (no biometric data is shown; use this when a household lost its revocation code)", "可撤回的住户（按房号；不显示任何生物特征数据；供遗失撤回码的住户使用）"),
    ("manager_revoke", "Withdraw and delete", "撤回并删除"),
    ("manager_revoked", "Withdrawn: template, key and PIN deleted. Give the household this receipt:", "已撤回：模板、密钥和密码已删除。请将此回执交给住户："),
    ("manager_no_residents", "Nobody is enrolled.", "暂无登记住户。"),
    ("suppressed", "not shown (1-10)", "不显示（1-10）"),
    ("auditor_heading", "Auditor: no-retention report", "审计：不留存核查报告"),
    ("auditor_download", "Download the signed report (JSON)", "下载签名报告（JSON）"),
    ("auditor_deletions", "Template deletions in the audit log", "审计日志中的模板删除记录"),
    ("result_passed", "PASSED", "通过"),
    ("result_failed", "FAILED", "未通过"),
    ("forbidden", "You may not see this page.", "您无权查看此页面。"),
    ("not_found", "No such page.", "页面不存在。"),
    ("bad_request", "The form was not accepted (expired or incomplete). Go back, reload and try again.", "表单未被接受（已过期或不完整）。请返回、刷新后重试。"),
    ("server_error", "Something went wrong on the gate's side; try again in a minute. If it keeps happening, tell the management office.", "门禁系统内部出错，请稍后重试。如果问题持续，请联系物业管理处。"),
    ("unavailable", "The gate is restarting; try again in a minute.", "门禁系统正在重启，请稍后重试。"),
    ("enrol_needs_staff", "Face enrolment could not be completed here: the management office will help you in person. Meanwhile you can set a PIN.", "无法在此完成人脸登记：物业管理处将当面为您办理。您可以先设置密码。"),
    ("pin_format", "a PIN is 4 to 8 digits", "密码须为 4 至 8 位数字"),
    ("pin_weak", "this PIN is among the first ones a guesser tries (a common PIN, a year, a repeat or a run); choose another", "此密码是常被猜测的密码（常见密码、年份、重复或连续数字），请另选一个"),
    ("busy", "The gate camera is enrolling someone else; try again in a minute.", "门禁摄像头正在为他人登记，请稍后再试。"),
];

/// The text for `key` in `lang`.
pub fn t(lang: Lang, key: &str) -> &'static str {
    TEXTS.iter().find(|(k, _, _)| *k == key).map_or("?", |(_, en, zh)| match lang {
        Lang::En => en,
        Lang::Zh => zh,
    })
}

/// The text with `{name}` placeholders filled.
pub fn tf(lang: Lang, key: &str, args: &[(&str, &str)]) -> String {
    let mut text = t(lang, key).to_owned();
    for (name, value) in args {
        text = text.replace(&format!("{{{name}}}"), value);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_both_languages_and_keys_are_unique() {
        let mut keys = std::collections::BTreeSet::new();
        for (key, en, zh) in TEXTS {
            assert!(keys.insert(*key), "{key} twice");
            assert!(!en.is_empty() && !zh.is_empty(), "{key}");
            // Placeholders agree between the two languages.
            let holes = |s: &str| {
                s.match_indices('{').map(|(i, _)| s[i..].split('}').next().unwrap_or("").to_owned()).collect::<Vec<_>>()
            };
            assert_eq!(holes(en), holes(zh), "{key}");
        }
        assert_eq!(Lang::from_tag("zh-CN,zh;q=0.9"), Lang::Zh);
        assert_eq!(Lang::from_tag("en-GB"), Lang::En);
        assert_eq!(tf(Lang::En, "enrol_progress", &[("good", "2"), ("needed", "3")]), "Good frames: 2 of 3");
    }
}
