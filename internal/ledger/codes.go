package ledger

// Code is a stable reason a transaction was refused. Numbers and names never
// change meaning: clients branch on them and old blocks record them.
type Code uint32

// Result codes, in one place as the ABCI spec recommends.
const (
	OK Code = iota
	CodeMalformed
	CodeWrongChain
	CodeUnknownSigner
	CodeBadSequence
	CodeBadSignature
	CodeNotAuthorized
	CodeAlreadyRegistered
	CodeDIDExists
	CodeNotFound
	CodeDeactivated
	CodeRecoveryMismatch
	CodeUniquenessMismatch
	CodeInvalidField
	CodeProposalClosed
	CodeAlreadyVoted
	CodeProposalInvalid
	CodeInternal
	CodeStatusIndexTaken
	CodeStatusFinal
	CodeSequenceAhead
	CodeNoConsent
	lastCode = CodeNoConsent
)

// Codespace is reported with every non-zero code.
const Codespace = "imi"

type codeInfo struct{ name, en, zh string }

var codes = map[Code]codeInfo{
	OK:                     {"ok", "committed", "已提交"},
	CodeMalformed:          {"malformed", "the transaction is not well-formed", "交易格式错误"},
	CodeWrongChain:         {"wrong_chain", "the transaction was made for another network", "该交易不属于本网络"},
	CodeUnknownSigner:      {"unknown_signer", "the signer is not registered on this network", "签名者未在本网络登记"},
	CodeBadSequence:        {"bad_sequence", "the sequence number was already used: this transaction, or another with the same number, was submitted before (replay)", "序号已被使用：该交易或同序号的交易已提交过（重放）"},
	CodeBadSignature:       {"bad_signature", "the signature does not match the signer's current key", "签名与签名者当前密钥不符"},
	CodeNotAuthorized:      {"not_authorized", "the signer's role does not allow this", "签名者的角色无权执行此操作"},
	CodeAlreadyRegistered:  {"already_registered", "this person is already registered; if they lost their key, re-proof them instead", "此人已登记；如遗失密钥，请办理重新核验"},
	CodeDIDExists:          {"did_exists", "this key is already registered", "该密钥已登记"},
	CodeNotFound:           {"not_found", "no such DID, authority or proposal", "未找到该身份标识、机构或提案"},
	CodeDeactivated:        {"deactivated", "this DID has been deactivated", "该身份标识已注销"},
	CodeRecoveryMismatch:   {"recovery_mismatch", "the recovery key is not the one committed at registration", "恢复密钥与登记时预留的不符"},
	CodeUniquenessMismatch: {"uniqueness_mismatch", "the ID number does not belong to this DID", "身份证号码与该身份标识不符"},
	CodeInvalidField:       {"invalid_field", "a field has a value that is not allowed", "字段取值不合规"},
	CodeProposalClosed:     {"proposal_closed", "the proposal is no longer open for votes", "该提案已不接受投票"},
	CodeAlreadyVoted:       {"already_voted", "this authority has already approved the proposal", "该机构已批准此提案"},
	CodeProposalInvalid:    {"proposal_invalid", "the proposal cannot be carried out", "该提案无法执行"},
	CodeInternal:           {"internal", "the node could not process the transaction", "节点无法处理该交易"},
	CodeStatusIndexTaken:   {"status_index_taken", "that status-list entry is already allocated; pick another index", "该状态列表位置已被占用，请另选"},
	CodeSequenceAhead:      {"sequence_ahead", "an earlier transaction of this signer and lane has not reached this node yet; retry shortly or ask another node", "该签名者同一通道的前一笔交易尚未到达本节点，请稍后重试或换一个节点"},
	CodeNoConsent:          {"no_active_consent", "there is no active consent to withdraw", "没有可撤回的有效同意"},
	CodeStatusFinal:        {"status_not_allowed", "the credential's status cannot change that way (revocation is final)", "凭证状态不能如此变更（撤销不可恢复）"},
}

// Name is the stable machine-readable name of c.
func (c Code) Name() string {
	if i, ok := codes[c]; ok {
		return i.name
	}
	return "unknown"
}

// Message is the English explanation of c.
func (c Code) Message() string { return codes[c].en }

// MessageZH is the Chinese explanation of c.
func (c Code) MessageZH() string { return codes[c].zh }

// Codes lists every code, for documentation.
func Codes() []Code {
	out := make([]Code, 0, len(codes))
	for c := OK; c <= lastCode; c++ {
		out = append(out, c)
	}
	return out
}

// Rejection is a refused transaction: a code and the detail for the clerk.
type Rejection struct {
	Code   Code
	Detail string
}

func (r *Rejection) Error() string {
	if r.Detail == "" {
		return r.Code.Message()
	}
	return r.Code.Message() + ": " + r.Detail
}

func reject(c Code, detail string) *Rejection { return &Rejection{Code: c, Detail: detail} }
